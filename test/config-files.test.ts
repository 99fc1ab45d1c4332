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
      const config = parseConfig(await readFile(file, 'utf8'), file, {
        COUNTERSIGN_AGENT_TOKEN: 'x'.repeat(32),
      });
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

describe('Slack and admin settings from the environment', () => {
  const text = JSON.stringify({ servers: { s: { command: 'node' } } });
  const parse = (env: NodeJS.ProcessEnv) => parseConfig(text, 'c.json', env);

  it('HTTP mode, Socket Mode and the API URL are read; empty variables count as unset', () => {
    const ids = { SLACK_TEAM_ID: 'T1', SLACK_APP_ID: 'A1' };
    expect(
      parse({
        SLACK_BOT_TOKEN: 'xoxb-1',
        SLACK_SIGNING_SECRET: 's',
        SLACK_API_URL: 'http://127.0.0.1:9/api',
        ...ids,
      }).slack,
    ).toEqual({
      botToken: 'xoxb-1',
      signingSecret: 's',
      apiUrl: 'http://127.0.0.1:9/api/',
      teamId: 'T1',
      appId: 'A1',
    });
    expect(parse({ SLACK_BOT_TOKEN: 'xoxb-1', SLACK_APP_TOKEN: 'xapp-1', ...ids }).slack).toEqual({
      botToken: 'xoxb-1',
      appToken: 'xapp-1',
      teamId: 'T1',
      appId: 'A1',
    });
    const none = parse({ SLACK_BOT_TOKEN: '', SLACK_SIGNING_SECRET: '', COUNTERSIGN_ADMIN_TOKEN: '' });
    expect(none.slack).toBeUndefined();
    expect(none.adminToken).toBeUndefined();
  });

  it('half a Slack setup and a short admin token are refused with what is missing', () => {
    expect(() => parse({ SLACK_BOT_TOKEN: 'xoxb-1' })).toThrow(
      /neither SLACK_SIGNING_SECRET \(HTTP mode\) nor SLACK_APP_TOKEN \(Socket Mode\)/,
    );
    expect(() => parse({ SLACK_SIGNING_SECRET: 's' })).toThrow(/set without SLACK_BOT_TOKEN/);
    // Which workspace and app may send clicks is not optional once clicks are received.
    for (const env of [
      { SLACK_BOT_TOKEN: 'xoxb-1', SLACK_SIGNING_SECRET: 's', SLACK_TEAM_ID: 'T1' },
      { SLACK_BOT_TOKEN: 'xoxb-1', SLACK_APP_TOKEN: 'xapp-1', SLACK_APP_ID: 'A1' },
    ])
      expect(() => parse(env)).toThrow(/SLACK_TEAM_ID \(T…\) and SLACK_APP_ID \(A…\) must be set with Slack/);
    expect(() => parse({ COUNTERSIGN_ADMIN_TOKEN: 'short' })).toThrow(
      /COUNTERSIGN_ADMIN_TOKEN must be at least 16 characters/,
    );
  });
});
