import type { Redis } from 'ioredis';
import type { Logger } from '../log/logger.js';

type Listener = () => void;

/**
 * Tells this process when an approval changed anywhere (a click on another replica, an expiry, an execution).
 * Redis pub/sub carries the approval id; listeners re-read the record. Pub/sub can drop messages while the
 * connection is down, so waiters also poll (see parking.ts) and every listener is told after a reconnect.
 */
export class ApprovalEvents {
  private readonly listeners = new Map<string, Set<Listener>>();
  private started = false;

  constructor(
    private readonly subscriber: Redis,
    private readonly channel: string,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.subscriber.on('message', (channel: string, id: string) => {
      if (channel === this.channel) this.notify(id);
    });
    // After a reconnect messages may have been missed: let every waiter look again.
    this.subscriber.on('ready', () => {
      for (const id of this.listeners.keys()) this.notify(id);
    });
    try {
      await this.subscriber.subscribe(this.channel);
    } catch (error) {
      // Redis down at start: ioredis resubscribes when it reconnects; waiters poll meanwhile.
      this.logger.warn(
        { err: (error as Error).message },
        'approval events: subscribe failed; will retry on reconnect',
      );
    }
  }

  on(id: string, listener: Listener): () => void {
    let set = this.listeners.get(id);
    if (!set) {
      set = new Set();
      this.listeners.set(id, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(id);
    };
  }

  private notify(id: string): void {
    for (const listener of [...(this.listeners.get(id) ?? [])]) listener();
  }

  get waiting(): number {
    return this.listeners.size;
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.subscriber.disconnect();
  }
}
