import { pino } from 'pino';
import type { Logger } from 'pino';

export type { Logger };

/**
 * Structured logs go to stderr (stdout belongs to the MCP stdio transport in `countersign stdio`).
 * Secrets are redacted by path wherever they could appear.
 */
export function createLogger(level: string = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino(
    {
      level,
      base: { service: 'countersign' },
      redact: {
        paths: [
          'authorization',
          'token',
          'headers.authorization',
          'req.headers.authorization',
          'req.headers.cookie',
          '*.token',
          '*.authorization',
          'env',
          '*.env',
        ],
        censor: '[redacted]',
      },
    },
    pino.destination({ fd: 2, sync: false }),
  );
}

/** A logger that writes nothing, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
