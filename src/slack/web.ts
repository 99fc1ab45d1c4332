/**
 * The Slack Web API, as the gateway uses it. The only module that talks to Slack's Web API; it owns the
 * client's retry behaviour: the client itself never retries (its default would retry for about 30 minutes),
 * the approval queue retries with backoff bounded by the approval's expiry (jobs.ts).
 */
import {
  WebClient,
  WebAPIHTTPError,
  WebAPIRateLimitedError,
  WebAPIRequestError,
  WebAPIPlatformError,
} from '@slack/web-api';
import type { Logger } from '../log/logger.js';

export interface SlackSettings {
  botToken: string;
  /** Web API base URL, ending in "/" (default https://slack.com/api/). */
  apiUrl?: string;
}

/** Whether a failed Slack call is worth retrying, and after how long Slack asked us to wait. */
export function slackRetryHint(error: unknown): { retry: boolean; afterMs?: number } {
  if (error instanceof WebAPIRateLimitedError)
    return { retry: true, afterMs: Math.max(1, error.retryAfter) * 1000 };
  if (error instanceof WebAPIHTTPError) return { retry: error.statusCode >= 500 || error.statusCode === 429 };
  if (error instanceof WebAPIRequestError) return { retry: true };
  if (error instanceof WebAPIPlatformError) {
    // Slack's own transient errors; anything else (channel_not_found, invalid_auth, ...) will not heal by itself.
    return {
      retry: [
        'internal_error',
        'fatal_error',
        'service_unavailable',
        'ratelimited',
        'request_timeout',
      ].includes(error.data.error),
    };
  }
  return { retry: true };
}

const CACHE_MS = 60_000;

export class SlackApi {
  readonly client: WebClient;
  private readonly groups = new Map<string, { members: string[]; until: number }>();
  private readonly emails = new Map<string, { email: string | undefined; until: number }>();

  /** Whether a failed call of this client is worth retrying (see slackRetryHint). */
  retryHint(error: unknown): { retry: boolean; afterMs?: number } {
    return slackRetryHint(error);
  }

  constructor(
    settings: SlackSettings,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.client = new WebClient(settings.botToken, {
      ...(settings.apiUrl ? { slackApiUrl: settings.apiUrl } : {}),
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      timeout: 10_000,
    });
  }

  async post(
    channel: string,
    message: { text: string; blocks: unknown[] },
  ): Promise<{ channel: string; ts: string }> {
    const reply = await this.client.chat.postMessage({
      channel,
      text: message.text,
      blocks: message.blocks as never,
      unfurl_links: false,
    });
    if (!reply.ts || !reply.channel) throw new Error('chat.postMessage answered without channel and ts');
    return { channel: reply.channel, ts: reply.ts };
  }

  async update(channel: string, ts: string, message: { text: string; blocks: unknown[] }): Promise<void> {
    await this.client.chat.update({ channel, ts, text: message.text, blocks: message.blocks as never });
  }

  async threadReply(channel: string, ts: string, text: string): Promise<void> {
    await this.client.chat.postMessage({ channel, thread_ts: ts, text });
  }

  async ephemeral(channel: string, user: string, text: string): Promise<void> {
    await this.client.chat.postEphemeral({ channel, user, text });
  }

  async openModal(triggerId: string, view: Record<string, unknown>): Promise<void> {
    await this.client.views.open({ trigger_id: triggerId, view: view as never });
  }

  /** Members of a user group, cached for a minute (membership changes reach the gateway within that time). */
  async groupMembers(groupId: string): Promise<string[]> {
    const cached = this.groups.get(groupId);
    if (cached && cached.until > this.now()) return cached.members;
    const reply = await this.client.usergroups.users.list({ usergroup: groupId });
    const members = reply.users ?? [];
    this.groups.set(groupId, { members, until: this.now() + CACHE_MS });
    return members;
  }

  /** A user's email (to recognise a grant owner named by email); undefined when Slack does not tell. */
  async userEmail(userId: string): Promise<string | undefined> {
    const cached = this.emails.get(userId);
    if (cached && cached.until > this.now()) return cached.email;
    try {
      const reply = await this.client.users.info({ user: userId });
      const email = reply.user?.profile?.email;
      this.emails.set(userId, { email, until: this.now() + CACHE_MS });
      return email;
    } catch (error) {
      this.logger.debug(
        { err: (error as Error).message, userId },
        'slack: users.info failed; owner matched on id and handle only',
      );
      return undefined;
    }
  }
}
