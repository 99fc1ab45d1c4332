import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from './load.js';
import { reconcileReload } from './reload.js';

const FILE = path.join('/srv/countersign', 'countersign.json');
const HASH_A = 'a'.repeat(64);
const HASH_B = 'b'.repeat(64);
const base = {
  listen: { host: '127.0.0.1', port: 8080 },
  servers: { aws: { command: 'node', args: ['aws.js'], policy: 'aws.json' } },
  grants: [
    { id: 'deploy-bot', owner: 'olga', token_sha256: HASH_A },
    { id: 'ci-bot', owner: 'carl', token_sha256: HASH_B },
  ],
};
const config = (doc: Record<string, unknown>) => parseConfig(JSON.stringify({ ...base, ...doc }), FILE, {});

describe('reconcileReload: grants and the policy mapping change at once, the rest needs a restart', () => {
  it('an identical file changes nothing and needs no restart', () => {
    const reloaded = reconcileReload(config({}), config({}));
    expect(reloaded.restartNeeded).toEqual([]);
    expect(reloaded.grants).toEqual({ added: [], revoked: [], ownerChanged: [], tokenChanged: [] });
  });

  it('takes the new grants and names what changed (ids only)', () => {
    const next = config({
      grants: [
        { id: 'deploy-bot', owner: 'alice', token_sha256: HASH_B },
        { id: 'new-bot', owner: 'nina', token_sha256: HASH_A },
      ],
    });
    const reloaded = reconcileReload(config({}), next);
    expect(reloaded.config.grants.map((g) => g.id)).toEqual(['deploy-bot', 'new-bot']);
    expect(reloaded.grants).toEqual({
      added: ['new-bot'],
      revoked: ['ci-bot'],
      ownerChanged: ['deploy-bot'],
      tokenChanged: ['deploy-bot'],
    });
    expect(reloaded.restartNeeded).toEqual([]);
  });

  it('keeps the running values of settings wired at start, and names each', () => {
    const current = config({});
    const reloaded = reconcileReload(
      current,
      config({
        listen: { host: '127.0.0.1', port: 9090 },
        http: { max_body_bytes: 10 },
        people: [{ id: 'olga', identifiers: ['olga@example.com'] }],
        servers: {
          aws: { command: 'node', args: ['other.js'], policy: 'aws.json' },
          gcp: { url: 'http://x/' },
        },
      }),
    );
    expect(reloaded.restartNeeded).toEqual(['listen', 'http', 'people', 'servers/gcp', 'servers/aws']);
    expect(reloaded.config.raw).toBe(current.raw);
    expect(reloaded.config.servers.map((s) => [s.name, s.config])).toEqual([
      ['aws', current.servers[0]?.config],
    ]);
  });

  it('takes which policy file a server and a grant use, without a restart', () => {
    const reloaded = reconcileReload(
      config({}),
      config({
        servers: {
          aws: {
            command: 'node',
            args: ['aws.js'],
            policy: 'strict.json',
            grant_policies: { 'ci-bot': 'ci.json' },
          },
        },
      }),
    );
    expect(reloaded.restartNeeded).toEqual([]);
    expect(reloaded.config.servers[0]?.policyFile).toBe('/srv/countersign/strict.json');
    expect(reloaded.config.servers[0]?.grantPolicyFiles.get('ci-bot')).toBe('/srv/countersign/ci.json');
  });

  it('a file without grants revokes them all; the gateway does not open up until a restart', () => {
    const reloaded = reconcileReload(config({}), config({ grants: [] }));
    expect(reloaded.config.grants).toEqual([]);
    expect(reloaded.config.anonymous).toBe(false);
    expect(reloaded.grants.revoked).toEqual(['deploy-bot', 'ci-bot']);
    expect(reloaded.restartNeeded).toHaveLength(1);
    expect(reloaded.restartNeeded[0]).toMatch(/every token is refused/);
  });

  it('a gateway started without grants takes grants from a reload (tokens are required from then on)', () => {
    const reloaded = reconcileReload(config({ grants: [] }), config({}));
    expect(reloaded.config.anonymous).toBe(false);
    expect(reloaded.grants.revoked).toEqual(['local']);
    expect(reloaded.restartNeeded[0]).toMatch(/\/metrics stays open/);
  });
});
