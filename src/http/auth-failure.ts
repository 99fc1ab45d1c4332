import { gatewayEvent, writeAudit } from '../gateway/audit-write.js';
import type { GatewayServices } from '../gateway/services.js';
import type { AuthThrottle } from './auth-throttle.js';

/**
 * Counts a wrong token from `address` (for /mcp and the approvals API alike); true when the address is now
 * locked out. The lockout's start is audited once.
 */
export async function recordAuthFailure(
  services: GatewayServices,
  throttle: AuthThrottle,
  address: string,
): Promise<boolean> {
  let lockout;
  try {
    lockout = await throttle.failure(address);
  } catch {
    return false; // Redis is down: every call is refused anyway; the failure cannot be counted
  }
  if (!lockout) return false;
  if (lockout.first) {
    const { window_seconds, max } = services.config.raw.http.auth_failures;
    services.logger.warn(
      { address, max, window_seconds },
      'client locked out after too many wrong bearer tokens',
    );
    await writeAudit(
      services,
      gatewayEvent(services.now(), {
        type: 'auth',
        decision: 'deny',
        reason: 'auth_locked_out',
        message: `client ${address} sent more than ${max} wrong bearer tokens within ${window_seconds} s; locked out for ${lockout.retryAfterSeconds} s`,
        subject: {},
      }),
    );
  }
  return true;
}
