import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Grant } from '../config/load.js';
import { LOCAL_GRANT } from '../config/load.js';

/** A JSON-RPC error as an HTTP answer (no request id is known at this layer). */
export function jsonRpcError(res: ServerResponse, status: number, code: number, message: string): void {
  if (res.headersSent) return;
  const body = JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } });
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.end(body);
}

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

function hostName(hostHeader: string): string {
  if (hostHeader.startsWith('[')) return hostHeader.slice(0, hostHeader.indexOf(']') + 1);
  const colon = hostHeader.lastIndexOf(':');
  return colon === -1 ? hostHeader : hostHeader.slice(0, colon);
}

/**
 * Refuses requests whose Host or Origin could come from a DNS-rebinding page: the Host must be a
 * loopback name, the listen address or a configured host; an Origin, when sent, must be a loopback
 * origin or a configured one. Options are checked here, once, not on the first request.
 */
export function dnsRebindingGuard(options: {
  listenHost: string;
  allowedHosts: string[];
  allowedOrigins: string[];
}) {
  const hosts = new Set(
    [...LOOPBACK_NAMES, options.listenHost, ...options.allowedHosts].map((h) => h.toLowerCase()),
  );
  const anyHost = options.listenHost === '0.0.0.0' || options.listenHost === '::';
  const origins = new Set(options.allowedOrigins.map((o) => o.toLowerCase()));
  return (req: IncomingMessage, res: ServerResponse, next: () => void): void => {
    const host = (req.headers.host ?? '').toLowerCase();
    const name = hostName(host);
    if (!host || (!hosts.has(name) && !hosts.has(host) && !(anyHost && options.allowedHosts.length === 0))) {
      jsonRpcError(
        res,
        403,
        -32000,
        `Forbidden: Host "${host}" is not allowed (add it to http.allowed_hosts)`,
      );
      return;
    }
    const origin = req.headers.origin?.toLowerCase();
    if (origin !== undefined && !origins.has(origin)) {
      let loopback = false;
      try {
        loopback = LOOPBACK_NAMES.includes(
          new URL(origin).hostname === '::1' ? '[::1]' : new URL(origin).hostname,
        );
      } catch {
        loopback = false;
      }
      if (!loopback) {
        jsonRpcError(
          res,
          403,
          -32000,
          `Forbidden: Origin "${origin}" is not allowed (add it to http.allowed_origins)`,
        );
        return;
      }
    }
    next();
  };
}

/** The token of an `Authorization: Bearer <token>` header; undefined when there is none (nothing was guessed). */
export function bearerToken(authorization: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  return match?.[1];
}

const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest();

/** One secret bearer token (the admin or the metrics token), compared as SHA-256 digests in constant time. */
export class SecretToken {
  private readonly digest: Buffer;
  constructor(token: string) {
    this.digest = sha256(token);
  }

  matches(presented: string | undefined): boolean {
    // Digests have one length, so the comparison's time says nothing about the token's.
    return timingSafeEqual(sha256(presented ?? ''), this.digest) && presented !== undefined;
  }
}

/** The grants in force; `anonymous`: none are configured and every (loopback) client is the `local` grant. */
export interface GrantsInForce {
  grants: readonly Grant[];
  anonymous: boolean;
}

/**
 * Finds the grant a bearer token belongs to, comparing SHA-256 digests in constant time. The grants are read at
 * each request, so a reload that revokes a grant refuses its token from the next request on.
 */
export class GrantAuthenticator {
  constructor(private readonly inForce: () => GrantsInForce) {}

  authenticate(authorization: string | undefined): Grant | undefined {
    const { grants, anonymous } = this.inForce();
    if (anonymous) return LOCAL_GRANT;
    const token = bearerToken(authorization);
    if (!token) return undefined;
    const digest = sha256(token);
    let found: Grant | undefined;
    for (const grant of grants) {
      // Compare against every grant, so timing does not tell which (or whether one) matched early.
      if (grant.tokenSha256 && timingSafeEqual(digest, grant.tokenSha256) && !found) found = grant;
    }
    return found;
  }
}
