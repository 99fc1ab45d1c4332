import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { ServerNotification, ServerRequest, ServerResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { boundedText } from './methods.js';

export type MethodSchema = z.ZodObject<{ method: z.ZodLiteral<string> }>;
export type HandlerExtra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** Told of each request refused for invalid params (to audit it), with the raw request and the answer. */
export type InvalidParamsListener = (request: { method: string; params?: unknown }, message: string) => void;

/** Bound on the validation report in an answer: a hostile request must not make the answer huge. */
const MAX_INVALID_PARAMS_MESSAGE = 2000;

/**
 * Registers a request handler whose params are validated here, so a malformed request is answered
 * with JSON-RPC "Invalid params" (-32602) and a readable reason, not an internal error with a raw dump.
 */
export function handle<S extends MethodSchema>(
  server: Server,
  schema: S,
  handler: (request: z.output<S>, extra: HandlerExtra) => Promise<ServerResult>,
  onInvalidParams?: InvalidParamsListener,
): void {
  const method = schema.shape.method.value;
  const envelope = z.object({ method: z.literal(method) }).loose();
  server.setRequestHandler(envelope, async (request, extra) => {
    const parsed = schema.safeParse(request);
    if (!parsed.success) {
      const message = boundedText(
        `Invalid params for ${method}: ${z.prettifyError(parsed.error)}`,
        MAX_INVALID_PARAMS_MESSAGE,
      );
      onInvalidParams?.(request, message);
      throw new McpError(ErrorCode.InvalidParams, message);
    }
    return handler(parsed.data, extra);
  });
}

/** `handle` bound to one server and one invalid-params listener, for a session registering its handlers. */
export function handlerRegistrar(
  server: Server,
  onInvalidParams: InvalidParamsListener,
): <S extends MethodSchema>(
  schema: S,
  handler: (request: z.output<S>, extra: HandlerExtra) => Promise<ServerResult>,
) => void {
  return (schema, handler) => handle(server, schema, handler, onInvalidParams);
}
