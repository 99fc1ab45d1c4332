import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { PolicyBook } from '../src/gateway/policy-book.js';
import { REPO_ROOT } from './support/gateway.js';

describe('the configs the project ships', () => {
  for (const name of ['default.json', 'docker.json']) {
    it(`config/${name} is valid and its policies load`, async () => {
      const file = path.join(REPO_ROOT, 'config', name);
      const config = parseConfig(await readFile(file, 'utf8'), file, { COUNTERSIGN_AGENT_TOKEN: 'x' });
      expect(config.servers.map((s) => s.name)).toEqual(['everything']);
      const book = await PolicyBook.load(config);
      expect(book.resolve('everything', config.grants[0]?.id ?? '')).toBeDefined();
    });
  }

  it('the embedded default listens on loopback only and needs no token', async () => {
    const file = path.join(REPO_ROOT, 'config/default.json');
    const config = parseConfig(await readFile(file, 'utf8'), file, {});
    expect(config.raw.listen.host).toBe('127.0.0.1');
    expect(config.anonymous).toBe(true);
  });
});
