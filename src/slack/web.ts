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
import type { IdentitySource } from '../approvals/people.js';
import type { Logger } from '../log/logger.js';

export interface SlackSettings {
  botToken: string;
  /** Web API base URL, ending in "/" (default https://slack.com/api/). */
  apiUrl?: string;
  /** Longest a users.info lookup may take before the identity counts as unknown (default 5 s). */
  identityTimeoutMs?: number;
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

/**
 * How long a user's email, once Slack told it, is believed without asking again. Only successes are kept
 * (a failure is asked again next time), and an email only says who someone is, never that they may decide.
 */
export const IDENTITY_CACHE_MS = 60_000;
const IDENTITY_TIMEOUT_MS = 5_000;

/** users.info did not tell a usable email (the error names why, for the reviewer and the audit trail). */
export class SlackIdentityError extends Error {
  readonly code = 'countersign.slack.identity_unknown';
}

function identityProblem(error: unknown): string {
  if (error instanceof WebAPIRateLimitedError)
    return `Slack rate-limited users.info (retry in ${error.retryAfter} s)`;
  if (error instanceof WebAPIPlatformError) return `Slack's users.info answered ${error.data.error}`;
  if (error instanceof WebAPIHTTPError) return `Slack's users.info failed with HTTP ${error.statusCode}`;
  if (error instanceof WebAPIRequestError) return 'Slack could not be reached for users.info';
  return `users.info failed: ${(error as Error).message}`;
}

export class SlackApi implements IdentitySource {
  readonly client: WebClient;
  private readonly emails = new Map<string, { email: string; until: number }>();
  private readonly identityTimeoutMs: number;

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
    this.identityTimeoutMs = settings.identityTimeoutMs ?? IDENTITY_TIMEOUT_MS;
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

  /**
   * Members of a user group, asked of Slack at every decision: membership decides who may decide, so no cached
   * list (which could still name someone just removed) is ever used. Throws when Slack cannot tell.
   */
  async groupMembers(groupId: string): Promise<string[]> {
    const reply = await this.client.usergroups.users.list({ usergroup: groupId });
    if (!Array.isArray(reply.users)) throw new Error(`usergroups.users.list gave no members for ${groupId}`);
    return reply.users;
  }

  /**
   * The email on a Slack user's profile (IdentitySource): who a Slack user is. Fails closed: an error, a rate
   * limit, a timeout, no such user or no email on the profile throws SlackIdentityError (the app needs the
   * users:read.email scope to see emails). A success is kept for IDENTITY_CACHE_MS; a failure is not kept.
   */
  async slackUserEmail(userId: string): Promise<string> {
    const cached = this.emails.get(userId);
    if (cached && cached.until > this.now()) return cached.email;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new SlackIdentityError(`Slack's users.info did not answer within ${this.identityTimeoutMs} ms`),
          ),
        this.identityTimeoutMs,
      );
    });
    try {
      const reply = await Promise.race([
        this.client.users.info({ user: userId }).catch((error: unknown) => {
          throw new SlackIdentityError(identityProblem(error), { cause: error });
        }),
        timeout,
      ]);
      const email = reply.user?.profile?.email;
      if (reply.user?.id !== undefined && reply.user.id !== userId)
        throw new SlackIdentityError(`Slack's users.info answered for ${reply.user.id}, not ${userId}`);
      if (typeof email !== 'string' || !email.includes('@'))
        throw new SlackIdentityError(
          `Slack's users.info shows no email for ${userId} (a bot, or the app lacks the users:read.email scope)`,
        );
      // Bounded by the workspace's size in practice; a cap keeps a flood of ids from growing it without end.
      if (this.emails.size >= 10_000) this.emails.clear();
      this.emails.set(userId, { email, until: this.now() + IDENTITY_CACHE_MS });
      return email;
    } catch (error) {
      this.logger.warn({ err: (error as Error).message, userId }, 'slack: identity unknown');
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }
}
