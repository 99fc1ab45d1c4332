import { describe, expect, it } from 'vitest';
import { clientAddress } from './auth-throttle.js';

describe('clientAddress', () => {
  const proxies = new Set(['10.0.0.5', '10.0.0.6']);

  it('ignores X-Forwarded-For from a peer that is not a trusted proxy', () => {
    expect(clientAddress('203.0.113.9', '198.51.100.1', proxies)).toBe('203.0.113.9');
  });

  it('takes the rightmost untrusted hop behind trusted proxies, so a forged left part does not count', () => {
    expect(clientAddress('10.0.0.5', '6.6.6.6, 198.51.100.1, 10.0.0.6', proxies)).toBe('198.51.100.1');
  });

  it('reads IPv4-mapped addresses as IPv4', () => {
    expect(clientAddress('::ffff:10.0.0.5', '198.51.100.1', proxies)).toBe('198.51.100.1');
  });

  it('falls back to the peer when every hop is a trusted proxy', () => {
    expect(clientAddress('10.0.0.5', '10.0.0.6', proxies)).toBe('10.0.0.5');
  });
});
