/** Worker-thread entry: runs load specs sent by LoadThread, so callers never share the gateway's event loop. */
import { parentPort } from 'node:worker_threads';
import { runLoad } from './load.js';
import type { WorkerReply, WorkerRequest } from './load-thread.js';
import { countListenerWarnings } from './warnings.js';

const port = parentPort;
if (!port) throw new Error('load-worker.ts must run in a worker thread');
const warnings = countListenerWarnings('load worker');

port.on('message', (request: WorkerRequest) => {
  const before = warnings.count;
  void runLoad(request.spec).then(
    (result) => {
      const reply: WorkerReply = { id: request.id, ok: true, result, suppressedWarnings: warnings.count - before };
      port.postMessage(reply, [result.latencies.buffer as ArrayBuffer]);
    },
    (error: unknown) => {
      const reply: WorkerReply = { id: request.id, ok: false, message: error instanceof Error ? error.message : String(error) };
      port.postMessage(reply);
    },
  );
});
