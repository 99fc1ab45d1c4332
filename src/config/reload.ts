/**
 * What a reload may change in a running gateway. The config file is read again on SIGHUP; of it, only the
 * grants and which policy file each server and grant uses take effect at once (the policy files themselves are
 * re-read by the caller). Everything else — where it listens, Redis, the upstream servers' commands and URLs,
 * HTTP limits, approvals timing, the people directory, data_dir — was wired into the process at start: a change
 * there is reported as needing a restart, and the values the process started with stay in force.
 *
 * A pure function of the config in force and the config just read: no file, no clock.
 */
import { isDeepStrictEqual } from 'node:util';
import type { GatewayConfig, Grant, ServerEntry } from './load.js';
import type { RawConfig, ServerConfig } from './schema.js';

/** How the grants in force changed (grant ids; tokens are never named). */
export interface GrantChanges {
  added: string[];
  revoked: string[];
  ownerChanged: string[];
  /** Same id, another token: the old token no longer authenticates. */
  tokenChanged: string[];
}

export interface ReconciledConfig {
  /** The config to run with from now on: the start-time config with the new grants and policy mapping. */
  config: GatewayConfig;
  grants: GrantChanges;
  /** Config keys (JSON-pointer-like, e.g. `listen`, `servers/aws`) that changed but need a restart. */
  restartNeeded: string[];
}

/** Top-level keys whose values were wired into the process at start. */
const RESTART_ONLY = [
  'listen',
  'redis',
  'audit',
  'http',
  'approvals',
  'max_argument_bytes',
  'shutdown_grace_ms',
  'people',
  'data_dir',
] as const satisfies readonly (keyof RawConfig)[];

/** A server's settings apart from which policy files it uses (those are reloaded). */
function connectionOf(config: ServerConfig): Record<string, unknown> {
  const { policy: _policy, grant_policies: _grantPolicies, ...rest } = config;
  return rest;
}

/** Whether two versions of a grant take the same bearer token. */
export function sameToken(a: Grant, b: Grant): boolean {
  if (!a.tokenSha256 || !b.tokenSha256) return a.tokenSha256 === b.tokenSha256;
  return a.tokenSha256.equals(b.tokenSha256);
}

function grantChanges(current: readonly Grant[], next: readonly Grant[]): GrantChanges {
  const before = new Map(current.map((g) => [g.id, g]));
  const after = new Map(next.map((g) => [g.id, g]));
  const changes: GrantChanges = { added: [], revoked: [], ownerChanged: [], tokenChanged: [] };
  for (const grant of next) {
    const was = before.get(grant.id);
    if (!was) changes.added.push(grant.id);
    else {
      if (was.owner !== grant.owner) changes.ownerChanged.push(grant.id);
      if (!sameToken(was, grant)) changes.tokenChanged.push(grant.id);
    }
  }
  for (const grant of current) if (!after.has(grant.id)) changes.revoked.push(grant.id);
  return changes;
}

/** The servers in force, each with the policy mapping the new config gives it (servers stay as started). */
function reloadPolicyMapping(
  current: readonly ServerEntry[],
  next: readonly ServerEntry[],
  restartNeeded: string[],
): ServerEntry[] {
  const fresh = new Map(next.map((s) => [s.name, s]));
  for (const entry of next)
    if (!current.some((s) => s.name === entry.name)) restartNeeded.push(`servers/${entry.name}`);
  return current.map((entry) => {
    const now = fresh.get(entry.name);
    if (!now) {
      // Removed from the file: it keeps running (and keeps its policies) until a restart.
      restartNeeded.push(`servers/${entry.name}`);
      return entry;
    }
    if (!isDeepStrictEqual(connectionOf(entry.config), connectionOf(now.config)))
      restartNeeded.push(`servers/${entry.name}`);
    // The entry's `config` stays as started (it describes the connection); the policy files are these now.
    return {
      ...entry,
      policyFile: now.policyFile,
      grantPolicyFiles: now.grantPolicyFiles,
    };
  });
}

/**
 * Merges a freshly read config into the one in force. A gateway started without grants (loopback, every client
 * is `local`) takes grants from a reload — that only tightens; one started with grants never becomes open by a
 * reload: a file without grants revokes them all and every token is refused until a restart.
 */
export function reconcileReload(current: GatewayConfig, next: GatewayConfig): ReconciledConfig {
  const restartNeeded: string[] = [];
  for (const key of RESTART_ONLY)
    if (!isDeepStrictEqual(current.raw[key], next.raw[key])) restartNeeded.push(key);
  const servers = reloadPolicyMapping(current.servers, next.servers, restartNeeded);

  const anonymous = current.anonymous && next.anonymous;
  const grants = next.anonymous && !current.anonymous ? [] : next.grants;
  if (current.anonymous && !next.anonymous && current.metricsToken === undefined)
    // /metrics decided at start that it is open (no grants, loopback): only a restart closes it.
    restartNeeded.push('grants (/metrics stays open without a token until a restart)');
  if (!current.anonymous && next.anonymous)
    restartNeeded.push(
      'grants (none left: every token is refused; a restart would serve loopback clients as local)',
    );

  return {
    config: { ...current, servers, grants, anonymous },
    grants: grantChanges(current.grants, grants),
    restartNeeded,
  };
}
