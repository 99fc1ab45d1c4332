/**
 * Waiting for a task an upstream server created. A blocking `tasks/result` would be cut off by the server's
 * `timeout_ms` like any request, so the task is polled with `tasks/get` (each poll is a short request, at the
 * interval the upstream suggests) and its result fetched once it is terminal.
 */
import { CallToolResultSchema, GetTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { UpstreamConnection } from '../upstream/connection.js';
import { abortableSleep } from './abortable-sleep.js';

const MIN_POLL_MS = 50;
const MAX_POLL_MS = 30_000;

export async function awaitUpstreamTask(
  connection: UpstreamConnection,
  taskId: string,
  signal: AbortSignal,
): Promise<CallToolResult> {
  for (;;) {
    if (signal.aborted) throw new Error('stopped waiting for the upstream task');
    const task = await connection.request({ method: 'tasks/get', params: { taskId } }, GetTaskResultSchema, {
      signal,
    });
    // input_required: tasks/result is where the upstream delivers what it needs to ask.
    if (task.status !== 'working') break;
    await abortableSleep(Math.min(Math.max(task.pollInterval ?? 1000, MIN_POLL_MS), MAX_POLL_MS), signal);
  }
  return connection.request({ method: 'tasks/result', params: { taskId } }, CallToolResultSchema, { signal });
}
