import { readFileSync } from 'node:fs';
import { getEventListeners } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUpstreamFetch } from './http-fetch.js';

// A self-signed certificate for localhost / 127.0.0.1, valid until 2126, made for these tests only.
const TLS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test/fixtures/tls');
const TLS = {
  key: readFileSync(path.join(TLS_DIR, 'localhost.key')),
  cert: readFileSync(path.join(TLS_DIR, 'localhost.crt')),
};

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;

/** A real HTTP(S) server whose routes the tests set; counts the TCP connections it accepted. */
async function startServer(routes: Record<string, Handler>, tls = false) {
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const route = routes[new URL(req.url ?? '/', 'http://x').pathname];
      if (route) route(req, res, body);
      else res.writeHead(404).end('no route');
    });
  };
  const server = tls ? https.createServer(TLS, onRequest) : http.createServer(onRequest);
  let connections = 0;
  server.on(tls ? 'secureConnection' : 'connection', () => (connections += 1));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const gate = () => {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
};

describe('createUpstreamFetch', () => {
  const secondEvent = gate();
  let closedEarly = gate();
  let server: Awaited<ReturnType<typeof startServer>>;
  const upstreamFetch = createUpstreamFetch();

  beforeAll(async () => {
    server = await startServer({
      '/echo': (req, res, body) => {
        res.setHeader('set-cookie', ['a=1', 'b=2']);
        res.writeHead(201, 'Made It', { 'content-type': 'application/json', 'mcp-session-id': 's-1' });
        res.end(
          JSON.stringify({
            method: req.method,
            body,
            contentLength: req.headers['content-length'],
            session: req.headers['mcp-session-id'],
            accept: req.headers.accept,
          }),
        );
      },
      '/sse': (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: first\n\n');
        void secondEvent.opened.then(() => res.end('data: second\n\n'));
      },
      '/accepted': (_req, res) => res.writeHead(202).end(),
      '/empty': (_req, res) => res.writeHead(204).end(),
      '/never': (req, res) => {
        res.on('close', () => closedEarly.open());
        req.on('close', () => undefined);
      },
      '/stall': (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: first\n\n');
        res.on('close', () => closedEarly.open());
      },
      '/moved': (_req, res) => res.writeHead(307, { location: '/echo' }).end(),
      '/repeated': (req, res) => {
        res.setHeader('content-type', ['application/json', 'text/event-stream']);
        res.setHeader('x-agent', req.headers['user-agent'] ?? '(none)');
        res.end('{}');
      },
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('sends the method, headers and body, and returns status, status text, headers and body', async () => {
    const response = await upstreamFetch(`${server.url}/echo`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': 'abc',
      },
      body: '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"é":"ü"}}',
    });
    expect(response.status).toBe(201);
    expect(response.ok).toBe(true);
    expect(response.statusText).toBe('Made It');
    expect(response.headers.get('mcp-session-id')).toBe('s-1');
    expect(response.headers.get('set-cookie')).toBe('a=1, b=2');
    expect(await response.json()).toEqual({
      method: 'POST',
      body: '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"é":"ü"}}',
      contentLength: '61', // bytes, not characters: é and ü are two bytes each
      session: 'abc',
      accept: 'application/json, text/event-stream',
    });
  });

  it('streams the body: the first event is read before the server has sent the second', async () => {
    const response = await upstreamFetch(`${server.url}/sse`, { method: 'GET' });
    const reader = (response.body as ReadableStream<Uint8Array>)
      .pipeThrough(new TextDecoderStream())
      .getReader();
    expect((await reader.read()).value).toBe('data: first\n\n');
    secondEvent.open();
    let rest = '';
    for (let part = await reader.read(); !part.done; part = await reader.read()) rest += part.value;
    expect(rest).toBe('data: second\n\n');
  });

  it('answers 202 with an empty body and 204 with none', async () => {
    const accepted = await upstreamFetch(`${server.url}/accepted`, { method: 'POST', body: '{}' });
    expect(accepted.status).toBe(202);
    expect(await accepted.text()).toBe('');
    const empty = await upstreamFetch(`${server.url}/empty`, { method: 'DELETE' });
    expect(empty.status).toBe(204);
    expect(empty.body).toBeNull();
  });

  it('reuses one keep-alive connection for requests one after another, also after a cancelled 202', async () => {
    const before = server.connections();
    for (let i = 0; i < 5; i++) {
      // What the SDK does with the answer to every notification.
      await (await upstreamFetch(`${server.url}/accepted`, { method: 'POST', body: '{}' })).body?.cancel();
    }
    for (let i = 0; i < 20; i++)
      await (await upstreamFetch(`${server.url}/echo`, { method: 'POST', body: '{}' })).text();
    expect(server.connections() - before).toBeLessThanOrEqual(1);
  });

  it('keeps a repeated response header (joined, as undici does) and sends a User-Agent', async () => {
    const response = await upstreamFetch(`${server.url}/repeated`);
    expect(response.headers.get('content-type')).toBe('application/json, text/event-stream');
    expect(response.headers.get('x-agent')).toBe('countersign');
    const named = await upstreamFetch(`${server.url}/repeated`, { headers: { 'user-agent': 'mine' } });
    expect(named.headers.get('x-agent')).toBe('mine');
  });

  it('listens to a shared abort signal only while a request runs, without a listener-leak warning', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => {
      warnings.push(warning.name);
    };
    process.on('warning', onWarning);
    const shared = new AbortController();
    for (let i = 0; i < 50; i++) {
      await (
        await upstreamFetch(`${server.url}/echo`, { method: 'POST', body: '{}', signal: shared.signal })
      ).text();
    }
    // The SDK sends every request of a session with the same signal: many at once.
    await Promise.all(
      Array.from({ length: 30 }, async () =>
        (
          await upstreamFetch(`${server.url}/echo`, { method: 'POST', body: '{}', signal: shared.signal })
        ).text(),
      ),
    );
    await new Promise((resolve) => setImmediate(resolve));
    process.off('warning', onWarning);
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(0);
    expect(warnings).not.toContain('MaxListenersExceededWarning');
  });

  it('rejects with the abort reason when aborted before the answer, and closes the request', async () => {
    closedEarly = gate();
    const controller = new AbortController();
    const pending = upstreamFetch(`${server.url}/never`, {
      method: 'POST',
      body: '{}',
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 50);
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    await closedEarly.opened;
    const already = new AbortController();
    already.abort();
    await expect(upstreamFetch(`${server.url}/echo`, { signal: already.signal })).rejects.toMatchObject({
      name: 'AbortError',
    });
  });

  it('errors the body stream when aborted while the body is read', async () => {
    closedEarly = gate();
    const controller = new AbortController();
    const response = await upstreamFetch(`${server.url}/stall`, { signal: controller.signal });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    controller.abort();
    await expect(reader.read()).rejects.toBeDefined();
    await closedEarly.opened;
  });

  it('fails a request that stays idle past the idle timeout, before or during the body', async () => {
    const impatient = createUpstreamFetch({ idleTimeoutMs: 150 });
    closedEarly = gate();
    await expect(impatient(`${server.url}/never`, { method: 'POST', body: '{}' })).rejects.toThrow(
      /no data from http:\/\/127\.0\.0\.1:\d+ for 150 ms/,
    );
    await closedEarly.opened;
    const response = await impatient(`${server.url}/stall`);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    await expect(reader.read()).rejects.toThrow(/for 150 ms/);
  });

  it('returns a redirect as is when asked to (redirect: manual, as the SDK asks)', async () => {
    const response = await upstreamFetch(`${server.url}/moved`, {
      method: 'POST',
      body: '{}',
      redirect: 'manual',
    });
    expect(response.status).toBe(307);
    expect(response.headers.get('location')).toBe('/echo');
  });

  it('hands what it does not do itself to the fallback: redirects to follow, other bodies, Request objects', async () => {
    const handed: string[] = [];
    const fallback: typeof fetch = async (input, init) => {
      handed.push(`${init?.method ?? 'GET'} ${input instanceof Request ? input.url : String(input)}`);
      return new Response('from fallback');
    };
    const withFallback = createUpstreamFetch({ fallback });
    expect(await (await withFallback(`${server.url}/moved`, { method: 'POST', body: '{}' })).text()).toBe(
      'from fallback',
    );
    await withFallback(`${server.url}/echo`, { method: 'POST', body: new URLSearchParams({ a: '1' }) });
    await withFallback(new Request(`${server.url}/echo`));
    // undici refuses these two; Node would send credentials from the URL, and a malformed request.
    const withUser = server.url.replace('http://', 'http://user:secret@');
    await withFallback(`${withUser}/echo`, { method: 'POST', body: '{}' });
    await withFallback(`${server.url}/echo`, {
      method: 'POST',
      body: '{}',
      headers: { 'transfer-encoding': 'chunked' },
    });
    expect(handed).toEqual([
      `POST ${server.url}/moved`,
      `POST ${server.url}/echo`,
      `GET ${server.url}/echo`,
      `POST ${withUser}/echo`,
      `POST ${server.url}/echo`,
    ]);
  });
});

describe('createUpstreamFetch and a server that closes idle connections', () => {
  it("lets a pooled connection go a second before the server's announced keep-alive timeout", async () => {
    const server = await startServer({ '/echo': (_req, res) => res.end('ok') });
    const upstreamFetch = createUpstreamFetch();
    try {
      // A Node server closes idle connections after 5 s and says so (Keep-Alive: timeout=5): the client
      // must not send on one at 4.5 s, when the server may close it at any moment.
      await (await upstreamFetch(`${server.url}/echo`)).text();
      const before = server.connections();
      await (await upstreamFetch(`${server.url}/echo`)).text();
      expect(server.connections()).toBe(before); // reused while young
      await new Promise((resolve) => setTimeout(resolve, 4_300));
      expect(await (await upstreamFetch(`${server.url}/echo`)).text()).toBe('ok');
      expect(server.connections()).toBe(before + 1); // a new one: the old one was let go at 4 s
    } finally {
      await server.close();
    }
  }, 15_000);
});

describe('createUpstreamFetch over https', () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  beforeAll(async () => {
    server = await startServer({ '/echo': (_req, res, body) => res.writeHead(200).end(body) }, true);
  });
  afterAll(async () => {
    await server?.close();
  });

  it('verifies the server certificate: an untrusted one is refused', async () => {
    await expect(createUpstreamFetch()(`${server.url}/echo`, { method: 'POST', body: 'x' })).rejects.toThrow(
      /self[- ]signed certificate/,
    );
  });

  it('speaks https with a trusted certificate', async () => {
    const trusting = createUpstreamFetch({ httpsAgent: new https.Agent({ keepAlive: true, ca: TLS.cert }) });
    const response = await trusting(`${server.url}/echo`, { method: 'POST', body: 'over tls' });
    expect(await response.text()).toBe('over tls');
  });
});
