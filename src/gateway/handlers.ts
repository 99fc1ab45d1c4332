import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { ServerNotification, ServerRequest, ServerResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

type MethodSchema = z.ZodObject<{ method: z.ZodLiteral<string> }>;
export type HandlerExtra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/**
 * Registers a request handler whose params are validated here, so a malformed request is answered
 * with JSON-RPC "Invalid params" (-32602) and a readable reason, not an internal error with a raw dump.
 */
export function handle<S extends MethodSchema>(
  server: Server,
  schema: S,
  handler: (request: z.output<S>, extra: HandlerExtra) => Promise<ServerResult>,
): void {
  const method = schema.shape.method.value;
  const envelope = z.object({ method: z.literal(method) }).loose();
  server.setRequestHandler(envelope, async (request, extra) => {
    const parsed = schema.safeParse(request);
    if (!parsed.success) {
      throw new McpError(
        ErrorCode.InvalidParams,
        `Invalid params for ${method}: ${z.prettifyError(parsed.error)}`,
      );
    }
    return handler(parsed.data, extra);
  });
}
