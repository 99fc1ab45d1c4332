import { ListToolsResultSchema } from '@modelcontextprotocol/sdk/types.js';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import type { UpstreamConnection } from '../upstream/connection.js';

/** A tool as the downstream client sees it, and where calls to it go. */
export interface RoutedTool {
  exposedName: string;
  server: string;
  tool: Tool;
}

/** Separates server and tool in aggregated names (`<server>__<tool>`); server names never contain it. */
export const NAME_SEPARATOR = '__';

/**
 * The tools of one session's upstream servers. Lists are fetched in full (all pages) on first use
 * and after a list_changed notification or a reconnect. Only tools an upstream lists can be called:
 * a name it does not list is answered as unknown and never forwarded.
 */
export class ToolCatalog {
  private readonly cache = new Map<string, Promise<Tool[]>>();

  constructor(
    private readonly connections: ReadonlyMap<string, UpstreamConnection>,
    /** True on endpoints that expose several servers: tool names get the `<server>__` prefix. */
    readonly prefixed: boolean,
  ) {}

  invalidate(server?: string): void {
    if (server) this.cache.delete(server);
    else this.cache.clear();
  }

  async toolsOf(server: string): Promise<Tool[]> {
    let tools = this.cache.get(server);
    if (!tools) {
      tools = this.fetch(server);
      this.cache.set(server, tools);
      tools.catch(() => this.cache.delete(server));
    }
    return tools;
  }

  private async fetch(server: string): Promise<Tool[]> {
    const connection = this.connections.get(server);
    if (!connection?.capabilities.tools) return [];
    const tools: Tool[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 1000; page++) {
      const result = await connection.request(
        { method: 'tools/list', params: cursor ? { cursor } : {} },
        ListToolsResultSchema,
      );
      tools.push(...result.tools);
      cursor = result.nextCursor;
      if (!cursor) break;
    }
    return tools;
  }

  exposedName(server: string, tool: string): string {
    return this.prefixed ? `${server}${NAME_SEPARATOR}${tool}` : tool;
  }

  /** Splits an exposed name into server and tool name (without checking the tool exists). */
  parse(exposedName: string): { server: string; tool: string } | undefined {
    if (!this.prefixed) {
      const [only] = this.connections.keys();
      return only === undefined ? undefined : { server: only, tool: exposedName };
    }
    const at = exposedName.indexOf(NAME_SEPARATOR);
    if (at <= 0) return undefined;
    const server = exposedName.slice(0, at);
    if (!this.connections.has(server)) return undefined;
    return { server, tool: exposedName.slice(at + NAME_SEPARATOR.length) };
  }

  /** The upstream tool a call names, if its server lists it under exactly that name. */
  async resolve(exposedName: string): Promise<RoutedTool | undefined> {
    const parsed = this.parse(exposedName);
    if (!parsed) return undefined;
    const tool = (await this.toolsOf(parsed.server)).find((t) => t.name === parsed.tool);
    return tool ? { exposedName, server: parsed.server, tool } : undefined;
  }
}
