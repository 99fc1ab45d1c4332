import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import express from 'express';
import type { RequestHandler, Router } from 'express';
import type { GatewayServices } from '../gateway/services.js';
import type { McpHttpEndpoint } from './mcp-endpoint.js';
import { dnsRebindingGuard, jsonRpcError } from './guards.js';
import { metricsOff } from './metrics-endpoint.js';

export interface Readiness {
  /** `checks` name what failed (e.g. a Redis error); they go to the log, never to the HTTP answer. */
  check(): Promise<{ ready: boolean; checks: Record<string, string> }>;
}

export interface ExtraRoutes {
  /** The approvals API, mounted at /api. */
  api?: Router;
  /** Slack's receiver (POST /slack/events): its own raw-body parser verifies signatures; the guard checks timestamps first. */
  slack?: { router: Router; guard: RequestHandler };
  /** GET /metrics behind its token check (see metrics-endpoint.ts); without it /metrics answers 404. */
  metrics?: RequestHandler;
}

/**
 * Which MCP endpoint a request path names: `*` for `/mcp`, the decoded server name for `/mcp/<server>`
 * (a trailing slash and any letter case are accepted, as the other routes accept them); undefined otherwise.
 */
export function mcpEndpointOf(url: string | undefined): string | undefined {
  let target = url ?? '';
  // An absolute-form target (`POST http://host/mcp`, as sent to proxies) names its path after the authority.
  if (/^https?:\/\//i.test(target)) target = target.replace(/^https?:\/\/[^/?#]*/i, '');
  const path = target.split('?', 1)[0] ?? '';
  const match = /^\/mcp(?:\/([^/]+))?\/?$/i.exec(path);
  if (!match) return undefined;
  if (match[1] === undefined) return '*';
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return match[1];
  }
}

/**
 * The HTTP surface: MCP endpoints, health, readiness, metrics, the approvals API and Slack's receiver. MCP
 * requests are served straight from node:http (they are the hot path); the rest goes through an Express app.
 * No body parser runs globally: the MCP endpoint reads its own bodies with a size limit, and the Slack
 * receiver needs raw bodies.
 */
export function createHttpHandler(
  services: GatewayServices,
  mcp: McpHttpEndpoint,
  readiness: Readiness,
  extra: ExtraRoutes = {},
): RequestListener {
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

  // Health and readiness answer anyone (probes send any Host), so they say up/ready and nothing else:
  // no version, no error text, no counts. Why a check failed goes to the log, once per change.
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  let lastChecks = '';
  app.get('/readyz', async (_req, res) => {
    const { ready, checks } = await readiness.check();
    const shown = JSON.stringify(checks);
    if (shown !== lastChecks) {
      if (ready) services.logger.info({ checks }, 'ready');
      else services.logger.warn({ checks }, 'not ready');
      lastChecks = shown;
    }
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready' });
  });
  // Metrics get the same Host/Origin guard as /mcp, then their own token check.
  app.get('/metrics', guard, extra.metrics ?? metricsOff);
  if (extra.api) app.use('/api', guard, extra.api);

  const serveMcp = (req: IncomingMessage, res: ServerResponse, endpoint: string): void => {
    mcp.handle(req, res, endpoint).catch((error: Error) => {
      services.logger.error({ err: error.message, endpoint }, 'MCP request failed');
      jsonRpcError(res, 500, -32603, `Internal error: ${error.message}`);
    });
  };
  return (req, res) => {
    const endpoint = mcpEndpointOf(req.url);
    if (endpoint === undefined) {
      void app(req, res);
      return;
    }
    guard(req, res, () => serveMcp(req, res, endpoint));
  };
}
