import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseConfig } from '../src/config/load.js';
import { startGateway } from '../src/gateway/gateway.js';
import type { RunningGateway } from '../src/gateway/gateway.js';
import { silentLogger } from '../src/log/logger.js';

/** Allows echo under a per-grant limit that never triggers; everything else is denied. */
export const BENCH_POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    echo: { limits: [{ counter: 'echo_rate', window: 'minute', max: 100_000_000, scope: 'grant' }] },
  },
} as const;

export const SERVER_NAME = 'everything';

export interface BenchGateway {
  gateway: RunningGateway;
  /** The downstream endpoint for the one upstream: <gateway>/mcp/everything */
  mcpUrl: string;
  prefix: string;
}

/**
 * Starts Countersign in this process under BENCH_POLICY, in front of `upstreamUrl` (remote Streamable HTTP,
 * the same instance the direct side uses) or, with `stdio`, of its own server-everything over stdio.
 */
export async function startBenchGateway(options: {
  dir: string;
  redisUrl: string;
  upstreamUrl: string;
  stdio?: { entry: string };
}): Promise<BenchGateway> {
  await writeFile(path.join(options.dir, 'p.json'), JSON.stringify(BENCH_POLICY, null, 2));
  const prefix = `bench:${randomBytes(6).toString('hex')}:`;
  const config = parseConfig(
    JSON.stringify({
      listen: { host: '127.0.0.1', port: 0 },
      redis: { prefix },
      servers: {
        [SERVER_NAME]: options.stdio
          ? { command: process.execPath, args: [options.stdio.entry, 'stdio'], policy: 'p.json' }
          : { url: options.upstreamUrl, transport: 'streamable-http', policy: 'p.json' },
      },
      audit: { keep_arguments: false },
      data_dir: options.dir,
    }),
    path.join(options.dir, 'countersign.json'),
    {},
  );
  const gateway = await startGateway({ config, redisUrl: options.redisUrl, logger: silentLogger() });
  return { gateway, mcpUrl: `${gateway.url}/mcp/${SERVER_NAME}`, prefix };
}
