#!/usr/bin/env node
// Makes sure a redis-server is available before `npm start`, `npm test` and `npm run bench`.
// With REDIS_URL set, nothing is needed. Otherwise redis-server must be on PATH; when it is not and
// this machine can install it (root, Debian/Ubuntu apt-get), it is installed; if not, one line says how.
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

function onPath(binary) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    try {
      accessSync(path.join(dir, binary), constants.X_OK);
      return true;
    } catch {
      // keep looking
    }
  }
  return false;
}

if (process.env.REDIS_URL || onPath('redis-server')) process.exit(0);

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
if (isRoot && onPath('apt-get')) {
  console.error('countersign: redis-server is not installed; installing it with apt-get (Debian package redis-server)...');
  const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  const install =
    update.status === 0
      ? spawnSync('apt-get', ['install', '-y', '-qq', 'redis-server'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
      : update;
  if (install.status === 0 && onPath('redis-server')) {
    console.error(`countersign: installed ${execFileSync('redis-server', ['--version']).toString().trim()}`);
    process.exit(0);
  }
}
console.error(
  'countersign: redis-server was not found on PATH: install it with `sudo apt-get install -y redis-server` (Debian/Ubuntu), or set REDIS_URL to a Redis you run',
);
process.exit(1);
