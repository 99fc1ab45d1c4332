import { Worker } from 'node:worker_threads';
import type { LoadResult, LoadSpec } from './load.js';

export interface WorkerRequest {
  id: number;
  spec: LoadSpec;
}

export type WorkerReply =
  | { id: number; ok: true; result: LoadResult; suppressedWarnings: number }
  | { id: number; ok: false; message: string };

/**
 * The load generator, in its own worker thread: the gateway runs in this process, and clients on the
 * same event loop would slow it down (and be slowed by it). The worker loads TypeScript through tsx.
 */
export class LoadThread {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: LoadResult) => void; reject: (e: Error) => void }>();
  private failed: Error | undefined;
  /** MaxListenersExceededWarnings the worker's SDK clients raised and the worker did not print (see warnings.ts). */
  suppressedWarnings = 0;

  constructor() {
    const entry = new URL('./load-worker.ts', import.meta.url).href;
    const tsx = import.meta.resolve('tsx/esm/api');
    const bootstrap = `import { register } from ${JSON.stringify(tsx)}; register(); await import(${JSON.stringify(entry)});`;
    this.worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(bootstrap)}`));
    this.worker.on('message', (reply: WorkerReply) => {
      const waiter = this.pending.get(reply.id);
      if (!waiter) return;
      this.pending.delete(reply.id);
      if (reply.ok) {
        this.suppressedWarnings += reply.suppressedWarnings;
        waiter.resolve(reply.result);
      }
      else waiter.reject(new Error(reply.message));
    });
    const failAll = (error: Error): void => {
      this.failed = error;
      for (const waiter of this.pending.values()) waiter.reject(error);
      this.pending.clear();
    };
    this.worker.on('error', failAll);
    this.worker.on('exit', (code) => failAll(new Error(`load worker exited (code ${code})`)));
  }

  run(spec: LoadSpec): Promise<LoadResult> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const request: WorkerRequest = { id, spec };
      this.worker.postMessage(request);
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
