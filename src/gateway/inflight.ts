/** Counts calls in flight so shutdown can wait for them to finish within a grace period. */
export class InflightCalls {
  private count = 0;
  private waiters: (() => void)[] = [];

  get size(): number {
    return this.count;
  }

  async track<T>(work: () => Promise<T>): Promise<T> {
    this.count += 1;
    try {
      return await work();
    } finally {
      this.count -= 1;
      if (this.count === 0) for (const wake of this.waiters.splice(0)) wake();
    }
  }

  /** Resolves true when no call is in flight, or false when `timeoutMs` passed first. */
  async drained(timeoutMs: number): Promise<boolean> {
    if (this.count === 0) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /**
   * Like drained(), but the count must stay at zero through a turn of the event loop: a call that started
   * just as the last one ended (a request already read from a socket) is waited for too, and the answers
   * of the calls that ended, sent in the microtasks after their handlers return, are on their way.
   * Resolves false when `timeoutMs` passed first.
   */
  async settled(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!(await this.drained(Math.max(0, deadline - Date.now())))) return false;
      await new Promise((resolve) => setImmediate(resolve));
      if (this.count === 0) return true;
    }
  }
}
