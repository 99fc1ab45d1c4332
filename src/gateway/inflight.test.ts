import { describe, expect, it } from 'vitest';
import { InflightCalls } from './inflight.js';

const later = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('InflightCalls', () => {
  it('drained: resolves when the last call ends, or false at the timeout', async () => {
    const inflight = new InflightCalls();
    void inflight.track(() => later(50));
    expect(inflight.size).toBe(1);
    expect(await inflight.drained(1000)).toBe(true);
    void inflight.track(() => later(500));
    expect(await inflight.drained(50)).toBe(false);
  });

  it('settled: also waits for a call that starts just as the last one ends', async () => {
    const inflight = new InflightCalls();
    let secondDone = false;
    void inflight.track(async () => {
      await later(30);
      // The next request was already read: it starts in the same turn as this one ends.
      setImmediate(() => void inflight.track(() => later(100).then(() => void (secondDone = true))));
    });
    expect(await inflight.settled(2000)).toBe(true);
    expect(secondDone).toBe(true);
    expect(inflight.size).toBe(0);
  });

  it('settled: false when calls keep running past the timeout', async () => {
    const inflight = new InflightCalls();
    void inflight.track(() => later(400));
    expect(await inflight.settled(50)).toBe(false);
  });
});
