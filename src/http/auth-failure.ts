import { gatewayEvent, writeAudit } from '../gateway/audit-write.js';
import type { GatewayServices } from '../gateway/services.js';
import type { AuthThrottle, LockoutScope } from './auth-throttle.js';
import { addressBlock, tokenFingerprint } from './auth-throttle.js';

/** How to refuse a request whose bearer token matched nothing. */
export type WrongTokenAnswer = { status: 401 } | { status: 429; retryAfterSeconds: number; message: string };

const REFUSALS: Record<LockoutScope, string> = {
  address: 'Too many wrong bearer tokens from this address',
  token: 'This bearer token was refused too many times',
  global: 'Too many wrong bearer tokens reached the gateway',
};

/**
 * Refuses a missing or wrong bearer token (for /mcp, the approvals API and /metrics alike): 429 while a
 * lockout covers it, 401 otherwise. Call it only after the token was found invalid: the lockouts apply to wrong
 * tokens, never to valid ones. A request without a token guesses nothing and is not counted. The start of each
 * lockout is logged and audited once.
 */
export async function refuseWrongToken(
  services: GatewayServices,
  throttle: AuthThrottle,
  address: string,
  token: string | undefined,
): Promise<WrongTokenAnswer> {
  services.metrics.authFailures.inc();
  if (token === undefined) return { status: 401 };
  const verdict = await throttle.failure(address, token);
  for (const scope of verdict.started)
    await auditLockout(services, scope, address, token, !verdict.countedLocally);
  if (!verdict.lockout) return { status: 401 };
  const { scope, retryAfterSeconds } = verdict.lockout;
  return {
    status: 429,
    retryAfterSeconds,
    message: `${REFUSALS[scope]}; a valid token is still accepted; retry after ${retryAfterSeconds} s`,
  };
}

async function auditLockout(
  services: GatewayServices,
  scope: LockoutScope,
  address: string,
  token: string,
  shared: boolean,
): Promise<void> {
  const { window_seconds, max, global_max } = services.config.raw.http.auth_failures;
  const reason = {
    address: 'auth_locked_out',
    token: 'auth_token_locked_out',
    global: 'auth_global_ceiling',
  }[scope];
  const fingerprint = tokenFingerprint(token);
  const block = addressBlock(address);
  const client = block === address ? `client ${address}` : `client ${address} (counted as ${block})`;
  const message = {
    address: `${client} sent more than ${max} wrong bearer tokens within ${window_seconds} s; its wrong tokens are refused (429) until the window ends`,
    token: `the wrong bearer token with fingerprint ${fingerprint} was sent more than ${max} times within ${window_seconds} s (last from ${address}); it is refused (429) until the window ends`,
    global: `more than ${global_max} wrong bearer tokens within ${window_seconds} s from all clients (last from ${address}); every wrong token is refused (429) until the window ends`,
  }[scope];
  services.metrics.authLockouts.inc({ scope });
  services.logger.warn(
    // shared: false = Redis was unreachable and this process counted alone (the lockout holds here only).
    { address, scope, max, global_max, window_seconds, shared },
    `lockout: ${message}`,
  );
  await writeAudit(
    services,
    gatewayEvent(services.now(), { type: 'auth', decision: 'deny', reason, message, subject: { scope } }),
  );
}
