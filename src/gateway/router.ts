import { EmptyResultSchema, ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { z } from 'zod';
import type { UpstreamConnection } from '../upstream/connection.js';
import { NAME_SEPARATOR } from './catalog.js';

type Params = Record<string, unknown> | undefined;
type ListKey = 'resources' | 'resourceTemplates' | 'prompts';

/**
 * Relays the requests the policy does not touch. With one upstream server everything passes through
 * unchanged (cursors included). With several, lists are gathered from every server (prompt names get
 * the `<server>__` prefix), and reads, subscriptions and completions are routed by name or URI.
 */
export class UpstreamRouter {
  /** Which server listed a resource URI or template. */
  private readonly uriOwners = new Map<string, string>();

  constructor(
    private readonly connections: ReadonlyMap<string, UpstreamConnection>,
    private readonly prefixed: boolean,
  ) {}

  get single(): UpstreamConnection | undefined {
    return this.prefixed ? undefined : [...this.connections.values()][0];
  }

  async list<S extends z.ZodType>(
    method: string,
    key: ListKey,
    params: Params,
    schema: S,
    signal: AbortSignal,
  ): Promise<z.infer<S>> {
    const only = this.single;
    if (only) {
      const result = await only.request({ method, params: params ?? {} }, schema, { signal });
      this.learnUris(only.name, key, result);
      return result;
    }
    const items: unknown[] = [];
    for (const connection of this.capable(key === 'prompts' ? 'prompts' : 'resources')) {
      let cursor: string | undefined;
      for (let page = 0; page < 1000; page++) {
        const result = (await connection.request({ method, params: cursor ? { cursor } : {} }, schema, {
          signal,
        })) as Record<string, unknown>;
        this.learnUris(connection.name, key, result);
        const pageItems = (result[key] as Record<string, unknown>[] | undefined) ?? [];
        for (const item of pageItems) {
          items.push(
            key === 'prompts'
              ? { ...item, name: `${connection.name}${NAME_SEPARATOR}${String(item.name)}` }
              : item,
          );
        }
        cursor = typeof result.nextCursor === 'string' ? result.nextCursor : undefined;
        if (!cursor) break;
      }
    }
    return { [key]: items } as z.infer<S>;
  }

  private learnUris(server: string, key: ListKey, result: unknown): void {
    if (key === 'prompts') return;
    const list = (result as Record<string, unknown>)[key];
    if (!Array.isArray(list)) return;
    for (const item of list as Record<string, unknown>[]) {
      const uri = key === 'resources' ? item.uri : item.uriTemplate;
      if (typeof uri === 'string') this.uriOwners.set(uri, server);
    }
  }

  forgetUris(server: string): void {
    for (const [uri, owner] of this.uriOwners) if (owner === server) this.uriOwners.delete(uri);
  }

  connectionForUri(uri: string): UpstreamConnection | undefined {
    const only = this.single;
    if (only) return only;
    const owner = this.uriOwners.get(uri);
    return owner ? this.connections.get(owner) : undefined;
  }

  /** Routes by `params.uri`; an unknown URI is tried on each server that offers resources, in order. */
  async byUri<S extends z.ZodType>(
    method: string,
    params: { uri: string } & Record<string, unknown>,
    schema: S,
    signal: AbortSignal,
  ): Promise<z.infer<S>> {
    const owner = this.connectionForUri(params.uri);
    if (owner) return owner.request({ method, params }, schema, { signal });
    let lastError: unknown = new McpError(ErrorCode.InvalidParams, `Resource not found: ${params.uri}`);
    for (const connection of this.capable('resources')) {
      try {
        const result = await connection.request({ method, params }, schema, { signal });
        this.uriOwners.set(params.uri, connection.name);
        return result;
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  }

  /** Routes prompts/get by its (prefixed, when aggregated) name. */
  async byName<S extends z.ZodType>(
    method: string,
    params: { name: string } & Record<string, unknown>,
    schema: S,
    signal: AbortSignal,
  ): Promise<z.infer<S>> {
    const target = this.splitName(params.name);
    if (!target) throw new McpError(ErrorCode.InvalidParams, `Unknown prompt: ${params.name}`);
    return target.connection.request({ method, params: { ...params, name: target.name } }, schema, {
      signal,
    });
  }

  async complete<S extends z.ZodType>(
    params: { ref: { type: string } & Record<string, unknown> } & Record<string, unknown>,
    schema: S,
    signal: AbortSignal,
  ): Promise<z.infer<S>> {
    const ref = params.ref;
    if (ref.type === 'ref/prompt' && typeof ref.name === 'string') {
      const target = this.splitName(ref.name);
      if (!target) throw new McpError(ErrorCode.InvalidParams, `Unknown prompt: ${ref.name}`);
      return target.connection.request(
        { method: 'completion/complete', params: { ...params, ref: { ...ref, name: target.name } } },
        schema,
        { signal },
      );
    }
    const uri = typeof ref.uri === 'string' ? ref.uri : '';
    const connection = this.connectionForUri(uri) ?? this.capable('completions')[0];
    if (!connection) throw new McpError(ErrorCode.InvalidParams, `No server completes ${uri || ref.type}`);
    return connection.request({ method: 'completion/complete', params }, schema, { signal });
  }

  async broadcast(
    method: string,
    params: Params,
    filter: (c: UpstreamConnection) => boolean,
    signal: AbortSignal,
  ): Promise<void> {
    const targets = [...this.connections.values()].filter(filter);
    await Promise.all(
      targets.map((c) => c.request({ method, params: params ?? {} }, EmptyResultSchema, { signal })),
    );
  }

  private splitName(name: string): { connection: UpstreamConnection; name: string } | undefined {
    const only = this.single;
    if (only) return { connection: only, name };
    const at = name.indexOf(NAME_SEPARATOR);
    if (at <= 0) return undefined;
    const connection = this.connections.get(name.slice(0, at));
    return connection ? { connection, name: name.slice(at + NAME_SEPARATOR.length) } : undefined;
  }

  private capable(capability: 'resources' | 'prompts' | 'completions'): UpstreamConnection[] {
    return [...this.connections.values()].filter((c) => Boolean(c.capabilities[capability]));
  }
}
