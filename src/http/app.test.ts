import { describe, expect, it } from 'vitest';
import { mcpEndpointOf } from './app.js';

describe('mcpEndpointOf (which MCP endpoint a path names)', () => {
  it('names /mcp as every server and /mcp/<server> as that server, decoded', () => {
    expect(mcpEndpointOf('/mcp')).toBe('*');
    expect(mcpEndpointOf('/mcp/')).toBe('*');
    expect(mcpEndpointOf('/mcp?x=1')).toBe('*');
    expect(mcpEndpointOf('/MCP/everything')).toBe('everything');
    expect(mcpEndpointOf('/mcp/everything/')).toBe('everything');
    expect(mcpEndpointOf('/mcp/my%20server?session=1')).toBe('my server');
    expect(mcpEndpointOf('/mcp/%E0%A4%A')).toBe('%E0%A4%A'); // not decodable: kept, and then unknown
    expect(mcpEndpointOf('http://127.0.0.1:8080/mcp/everything')).toBe('everything');
    expect(mcpEndpointOf('HTTP://gateway.example/mcp?x')).toBe('*');
  });

  it('leaves every other path to the other routes', () => {
    for (const path of ['/', '/mcpx', '/mcp/a/b', '/api/approvals', '/healthz', '/slack/events', undefined])
      expect(mcpEndpointOf(path)).toBeUndefined();
  });
});
