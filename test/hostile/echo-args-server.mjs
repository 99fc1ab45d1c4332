#!/usr/bin/env node
// A raw stdio MCP server for hostile-argument tests: no SDK, no schema, so nothing between the wire
// and the answer reshapes the arguments. `echo_args` answers with the arguments exactly as JSON.parse
// read them from the line the gateway sent (own `__proto__` keys included); `count` says how many
// echo_args calls this process has run.
import { createInterface } from 'node:readline';

let calls = 0;
const send = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);
const text = (value) => ({ content: [{ type: 'text', text: value }] });

const handlers = {
  initialize: (params) => ({
    protocolVersion: typeof params?.protocolVersion === 'string' ? params.protocolVersion : '2025-06-18',
    capabilities: { tools: {} },
    serverInfo: { name: 'echo-args', version: '1.0.0' },
  }),
  ping: () => ({}),
  'tools/list': () => ({
    tools: [
      { name: 'echo_args', description: 'Echoes its raw arguments.', inputSchema: { type: 'object' } },
      { name: 'count', description: 'How many echo_args calls ran.', inputSchema: { type: 'object' } },
    ],
  }),
  'tools/call': (params) => {
    if (params?.name === 'count') return text(String(calls));
    if (params?.name !== 'echo_args')
      throw Object.assign(new Error(`Unknown tool: ${params?.name}`), { code: -32602 });
    calls += 1;
    try {
      return text(JSON.stringify(params.arguments ?? null));
    } catch (error) {
      return { ...text(`cannot echo: ${error.message}`), isError: true };
    }
  },
};

createInterface({ input: process.stdin, crlfDelay: Infinity }).on('line', (line) => {
  let message;
  try {
    message = JSON.parse(line);
  } catch {
    return;
  }
  if (
    message === null ||
    typeof message !== 'object' ||
    typeof message.method !== 'string' ||
    message.id === undefined
  )
    return;
  const handler = Object.hasOwn(handlers, message.method) ? handlers[message.method] : undefined;
  if (!handler) {
    send({
      jsonrpc: '2.0',
      id: message.id,
      error: { code: -32601, message: `Method not found: ${message.method}` },
    });
    return;
  }
  try {
    send({ jsonrpc: '2.0', id: message.id, result: handler(message.params) });
  } catch (error) {
    send({ jsonrpc: '2.0', id: message.id, error: { code: error.code ?? -32603, message: error.message } });
  }
});
