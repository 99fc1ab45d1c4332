/**
 * Reloading a running gateway (SIGHUP): the config file is read again, and its grants and the policies it names
 * replace the ones in force together — in one synchronous step, so a call sees either the old pair or the new
 * one. If the config or any policy file is invalid, nothing changes. Settings that need a restart are reported
 * (and logged) and keep their start-time values: see config/reload.ts.
 *
 * Everything that looks a grant up reads `services.config.grants` at the time it needs it, so the swap is
 * enough for new requests and for the re-check an approved call passes just before it runs (approved-call.ts).
 * Holders of a grant object captured earlier (open sessions) are told through `onSwap`.
 */
import { loadConfig } from '../config/load.js';
import type { Grant } from '../config/load.js';
import { reconcileReload } from '../config/reload.js';
import type { GrantChanges } from '../config/reload.js';
import { gatewayEvent, writeAudit } from './audit-write.js';
import { PolicyBook } from './policy-book.js';
import type { GatewayServices } from './services.js';

export interface ReloadSummary {
  /** Ids of the grants in force now. */
  grants: string[];
  changes: GrantChanges;
  /** Config keys that changed in the file but keep their start-time values until a restart. */
  restartNeeded: string[];
}

export interface ReloadOptions {
  /** The environment `token_env` grants are read from (the process's own, outside tests). */
  env: NodeJS.ProcessEnv;
  /** Runs in the same synchronous step as the swap, with the grants now in force. */
  onSwap?: (grants: readonly Grant[], changes: GrantChanges) => void;
}

/**
 * Reads the config file and every policy it names, then swaps grants and policies in at once. Throws
 * (ConfigError, PolicyError) without changing anything when a file is invalid.
 */
export async function reloadGateway(
  services: GatewayServices,
  options: ReloadOptions,
): Promise<ReloadSummary> {
  const read = await loadConfig(services.config.file, options.env);
  const { config, grants: changes, restartNeeded } = reconcileReload(services.config, read);
  const policies = await PolicyBook.load(config);
  // The swap: nothing awaits between these lines.
  services.config = config;
  services.policies = policies;
  options.onSwap?.(config.grants, changes);

  if (restartNeeded.length)
    services.logger.warn(
      { restart_needed: restartNeeded },
      `reload: these settings changed in ${config.file} but need a restart; the running values stay in force: ${restartNeeded.join(', ')}`,
    );
  await recordInForce(services, 'reloaded', changes);
  return { grants: config.grants.map((g) => g.id), changes, restartNeeded };
}

function describeChanges(changes: GrantChanges): string {
  const parts = [
    ['revoked', changes.revoked],
    ['added', changes.added],
    ['owner changed', changes.ownerChanged],
    ['token changed', changes.tokenChanged],
  ] as const;
  return parts
    .filter(([, ids]) => ids.length > 0)
    .map(([what, ids]) => `; ${what}: ${ids.join(', ')}`)
    .join('');
}

/**
 * Writes what is in force to the audit trail, as two `policy` events: the policies (file and SHA-256 of each)
 * and the grants (id and owner; never a token), with what a reload changed.
 */
export async function recordInForce(
  services: GatewayServices,
  when: 'loaded' | 'reloaded',
  changes?: GrantChanges,
): Promise<void> {
  const summary = services.policies.summary();
  await writeAudit(
    services,
    gatewayEvent(services.now(), {
      type: 'policy',
      decision: 'allow',
      reason: `policies_${when}`,
      message: summary.length ? summary.join('; ') : 'no policies: every call is denied',
      subject: summary,
    }),
  );
  const grants = services.config.grants.map((g) => ({ id: g.id, owner: g.owner }));
  await writeAudit(
    services,
    gatewayEvent(services.now(), {
      type: 'policy',
      decision: 'allow',
      reason: `grants_${when}`,
      message:
        (grants.length
          ? `grants in force: ${grants.map((g) => `${g.id} (owner ${g.owner})`).join(', ')}`
          : 'no grants: every token is refused') + (changes ? describeChanges(changes) : ''),
      subject: grants,
    }),
  );
}
