import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { z } from 'zod';
import { configSchema, isStdioServer } from './schema.js';
import type { RawConfig, ServerConfig } from './schema.js';

export interface Grant {
  id: string;
  owner: string;
  /** SHA-256 of the bearer token; undefined only for the implicit loopback grant. */
  tokenSha256?: Buffer;
}

export interface ServerEntry {
  name: string;
  config: ServerConfig;
  /** Absolute working directory for stdio servers. */
  cwd?: string;
  /** Absolute path of the policy for every grant, if any. */
  policyFile?: string;
  /** Absolute path of a grant's own policy. */
  grantPolicyFiles: Map<string, string>;
}

export interface GatewayConfig {
  file: string;
  raw: RawConfig;
  servers: ServerEntry[];
  grants: Grant[];
  /** True when no grants are configured: loopback-only, every client is the `local` grant. */
  anonymous: boolean;
  redisUrl?: string;
  auditJsonl?: string;
  /**
   * From SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SLACK_APP_TOKEN, SLACK_API_URL, SLACK_TEAM_ID, SLACK_APP_ID;
   * absent without a bot token.
   */
  slack?: SlackConfig;
  /** COUNTERSIGN_ADMIN_TOKEN: the bearer token of the approvals API; without it the API is off. */
  adminToken?: string;
  /**
   * COUNTERSIGN_METRICS_TOKEN: the bearer token of /metrics. Without it, /metrics is open only on a gateway
   * without grants (loopback-only, where /mcp is open too) and off otherwise.
   */
  metricsToken?: string;
}

export interface SlackConfig {
  botToken: string;
  /** HTTP mode: requests to POST /slack/events are verified with it. */
  signingSecret?: string;
  /** Socket Mode (no public URL): an app-level token xapp-…. */
  appToken?: string;
  /** Web API base URL, ending in "/". */
  apiUrl?: string;
  /**
   * SLACK_TEAM_ID and SLACK_APP_ID: an interaction is acted on only when its `team.id` and `api_app_id` are
   * these (besides its signature). Required whenever clicks are received.
   */
  teamId?: string;
  appId?: string;
}

export interface ConfigIssue {
  path: string;
  message: string;
}

export class ConfigError extends Error {
  readonly code = 'countersign.config.invalid';
  constructor(
    readonly file: string,
    readonly issues: ConfigIssue[],
  ) {
    super(
      `invalid config ${file}:\n${issues.map((i) => `  ${file}: ${i.path || '(root)'}: ${i.message}`).join('\n')}`,
    );
  }
}

/** Shortest bearer token accepted from the environment (grants given by hash cannot be checked). */
export const MIN_GRANT_TOKEN_LENGTH = 16;

export const LOCAL_GRANT: Grant = { id: 'local', owner: 'local' };

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_HOSTS.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function pointer(issuePath: readonly PropertyKey[]): string {
  return issuePath.map((p) => `/${String(p).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
}

function zodIssues(error: z.ZodError): ConfigIssue[] {
  return error.issues.map((issue) => ({ path: pointer(issue.path), message: issue.message }));
}

/** Parses and validates a config document. Relative paths resolve against the config file's folder. */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(file, [{ path: '', message: `not valid JSON: ${(error as Error).message}` }]);
  }
  const parsed = configSchema.safeParse(json);
  if (!parsed.success) throw new ConfigError(file, zodIssues(parsed.error));
  const raw = parsed.data;
  const base = path.dirname(path.resolve(file));
  const issues: ConfigIssue[] = [];

  const grants: Grant[] = raw.grants.map((g, index) => {
    let tokenSha256: Buffer | undefined;
    if (g.token_sha256) tokenSha256 = Buffer.from(g.token_sha256, 'hex');
    if (g.token_env) {
      const token = env[g.token_env];
      if (!token)
        issues.push({
          path: `/grants/${index}/token_env`,
          message: `environment variable ${g.token_env} is not set`,
        });
      else if (token.length < MIN_GRANT_TOKEN_LENGTH)
        // Only a token's length keeps guessing infeasible (valid tokens are never throttled): refuse short ones.
        issues.push({
          path: `/grants/${index}/token_env`,
          message: `the token in ${g.token_env} is ${token.length} characters; at least ${MIN_GRANT_TOKEN_LENGTH} are required (openssl rand -hex 32)`,
        });
      else tokenSha256 = createHash('sha256').update(token).digest();
    }
    return { id: g.id, owner: g.owner, tokenSha256 };
  });
  const ids = new Set<string>();
  raw.grants.forEach((g, index) => {
    if (ids.has(g.id))
      issues.push({ path: `/grants/${index}/id`, message: `grant id "${g.id}" is used twice` });
    ids.add(g.id);
  });
  if (grants.length === 0 && !isLoopbackHost(raw.listen.host)) {
    issues.push({
      path: '/listen/host',
      message: `refusing to listen on non-loopback address ${raw.listen.host} without grants: add "grants" with bearer tokens`,
    });
  }

  const servers: ServerEntry[] = Object.entries(raw.servers).map(([name, config]) => {
    const grantPolicyFiles = new Map<string, string>();
    for (const [grantId, policy] of Object.entries(config.grant_policies ?? {})) {
      if (!ids.has(grantId) && !(grants.length === 0 && grantId === LOCAL_GRANT.id)) {
        issues.push({
          path: `/servers/${name}/grant_policies/${grantId}`,
          message: `no grant with id "${grantId}"`,
        });
      }
      grantPolicyFiles.set(grantId, path.resolve(base, policy));
    }
    return {
      name,
      config,
      cwd: isStdioServer(config) ? path.resolve(base, config.cwd ?? '.') : undefined,
      policyFile: config.policy ? path.resolve(base, config.policy) : undefined,
      grantPolicyFiles,
    };
  });
  let slack: SlackConfig | undefined;
  if (env.SLACK_BOT_TOKEN) {
    slack = { botToken: env.SLACK_BOT_TOKEN };
    if (env.SLACK_SIGNING_SECRET) slack.signingSecret = env.SLACK_SIGNING_SECRET;
    if (env.SLACK_APP_TOKEN) slack.appToken = env.SLACK_APP_TOKEN;
    if (env.SLACK_API_URL)
      slack.apiUrl = env.SLACK_API_URL.endsWith('/') ? env.SLACK_API_URL : `${env.SLACK_API_URL}/`;
    if (env.SLACK_TEAM_ID) slack.teamId = env.SLACK_TEAM_ID;
    if (env.SLACK_APP_ID) slack.appId = env.SLACK_APP_ID;
    if ((slack.signingSecret || slack.appToken) && (!slack.teamId || !slack.appId)) {
      issues.push({
        path: '(environment)',
        message:
          'SLACK_TEAM_ID (T…) and SLACK_APP_ID (A…) must be set with Slack: clicks from any other workspace or app are refused',
      });
    }
    if (!slack.signingSecret && !slack.appToken) {
      issues.push({
        path: '(environment)',
        message:
          'SLACK_BOT_TOKEN is set but neither SLACK_SIGNING_SECRET (HTTP mode) nor SLACK_APP_TOKEN (Socket Mode) is: Slack clicks could not be received',
      });
    }
  } else if (env.SLACK_SIGNING_SECRET || env.SLACK_APP_TOKEN) {
    issues.push({
      path: '(environment)',
      message: 'SLACK_SIGNING_SECRET or SLACK_APP_TOKEN is set without SLACK_BOT_TOKEN',
    });
  }
  const adminToken = env.COUNTERSIGN_ADMIN_TOKEN || undefined;
  if (adminToken !== undefined && adminToken.length < 16) {
    issues.push({ path: '(environment)', message: 'COUNTERSIGN_ADMIN_TOKEN must be at least 16 characters' });
  }
  const metricsToken = env.COUNTERSIGN_METRICS_TOKEN || undefined;
  if (metricsToken !== undefined && metricsToken.length < 16) {
    issues.push({
      path: '(environment)',
      message: 'COUNTERSIGN_METRICS_TOKEN must be at least 16 characters',
    });
  }
  if (issues.length) throw new ConfigError(file, issues);

  return {
    ...(slack ? { slack } : {}),
    ...(adminToken ? { adminToken } : {}),
    ...(metricsToken ? { metricsToken } : {}),
    file,
    raw,
    servers,
    grants: grants.length ? grants : [LOCAL_GRANT],
    anonymous: grants.length === 0,
    redisUrl: env.REDIS_URL || raw.redis.url,
    auditJsonl: raw.audit.jsonl ? path.resolve(base, raw.audit.jsonl) : undefined,
  };
}

export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(file, [{ path: '', message: `cannot read: ${(error as Error).message}` }]);
  }
  return parseConfig(text, file, env);
}

/**
 * The config document alone (schema-checked, no environment): for tools that only need where the gateway
 * listens and keeps its data, and must not fail on secrets only the gateway's environment has.
 */
export async function loadRawConfig(file: string): Promise<RawConfig> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new ConfigError(file, [{ path: '', message: `cannot read: ${(error as Error).message}` }]);
  }
  const parsed = configSchema.safeParse(json);
  if (!parsed.success) throw new ConfigError(file, zodIssues(parsed.error));
  return parsed.data;
}
