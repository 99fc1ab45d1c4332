import express from 'express';
import type { Express, RequestHandler, Router } from 'express';
import type { GatewayServices } from '../gateway/services.js';
import type { McpHttpEndpoint } from './mcp-endpoint.js';
import { dnsRebindingGuard } from './guards.js';

export interface Readiness {
  check(): Promise<{ ready: boolean; checks: Record<string, string> }>;
}

/**
 * The HTTP surface: MCP endpoints, health, readiness and metrics. No body parser runs globally:
 * the MCP endpoint reads its own bodies with a size limit (and later the Slack receiver needs raw bodies).
 */
export interface ExtraRoutes {
  /** The approvals API, mounted at /api. */
  api?: Router;
  /** Slack's receiver (POST /slack/events): its own raw-body parser verifies signatures; the guard checks timestamps first. */
  slack?: { router: Router; guard: RequestHandler };
}

export function createHttpApp(
  services: GatewayServices,
  mcp: McpHttpEndpoint,
  readiness: Readiness,
  extra: ExtraRoutes = {},
): Express {
  const app = express();
  app.disable('x-powered-by');
  if (extra.slack) {
    // Slack calls from its own hosts (Host is the public name): the signature, not the Host header, protects it.
    app.post('/slack/events', extra.slack.guard);
    app.use(extra.slack.router);
  }
  const { http, listen } = services.config.raw;
  const guard = dnsRebindingGuard({
    listenHost: listen.host,
    allowedHosts: http.allowed_hosts,
    allowedOrigins: http.allowed_origins,
  });

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const { ready, checks } = await readiness.check();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', checks });
  });
  app.get('/metrics', async (_req, res) => {
    res.setHeader('Content-Type', services.metrics.registry.contentType);
    res.send(await services.metrics.registry.metrics());
  });
  app.all('/mcp', guard, mcp.handle);
  app.all('/mcp/:server', guard, mcp.handle);
  if (extra.api) app.use('/api', guard, extra.api);
  return app;
}
