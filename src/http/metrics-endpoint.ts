import type { RequestHandler } from 'express';
import type { GatewayServices } from '../gateway/services.js';
import { refuseWrongToken } from './auth-failure.js';
import { clientAddress } from './auth-throttle.js';
import type { AuthThrottle } from './auth-throttle.js';
import { SecretToken, bearerToken } from './guards.js';

export const METRICS_OFF =
  '/metrics is off on a gateway with grants: set COUNTERSIGN_METRICS_TOKEN (at least 16 characters) and scrape with Authorization: Bearer <token>';

/** The answer of /metrics when no handler was mounted (or it is off): nothing, and how to turn it on. */
export const metricsOff: RequestHandler = (_req, res) => {
  res.status(404).json({ error: METRICS_OFF });
};

/**
 * GET /metrics (Prometheus text). With COUNTERSIGN_METRICS_TOKEN set, only that bearer token is served, and
 * wrong ones count towards the same lockouts as /mcp. Without it, /metrics is open only on a gateway without
 * grants — which is loopback-only and whose /mcp needs no token either, so it reveals nothing /mcp does not —
 * and off (404, saying how to enable it) on any other. The Host/Origin guard runs before this handler.
 */
export function metricsEndpoint(
  services: GatewayServices,
  token: string | undefined,
  throttle: AuthThrottle,
): RequestHandler {
  const secret = token ? new SecretToken(token) : undefined;
  const open = !secret && services.config.anonymous;
  const trusted = new Set(services.config.raw.http.trusted_proxies);
  const serve: RequestHandler = async (_req, res) => {
    res.setHeader('Content-Type', services.metrics.registry.contentType);
    res.send(await services.metrics.registry.metrics());
  };
  if (open) return serve;
  if (!secret) return metricsOff;
  return async (req, res, next) => {
    const presented = bearerToken(req.headers.authorization);
    if (secret.matches(presented)) {
      await serve(req, res, next);
      return;
    }
    const address = clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], trusted);
    const refusal = await refuseWrongToken(services, throttle, address, presented);
    if (refusal.status === 429) {
      res.setHeader('Retry-After', String(refusal.retryAfterSeconds));
      res.status(429).json({ error: refusal.message });
      return;
    }
    res.setHeader('WWW-Authenticate', 'Bearer realm="countersign-metrics"');
    res
      .status(401)
      .json({ error: 'Unauthorized: Authorization: Bearer <COUNTERSIGN_METRICS_TOKEN> is required' });
  };
}
