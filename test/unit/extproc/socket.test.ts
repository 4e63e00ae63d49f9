/**
 * The Unix-socket placement of the ext_proc service: the socket is reachable by another user
 * (mode 0666; the pod-private folder is the boundary), a socket another live process answers on
 * is never taken over, and a stale one (its process killed) is replaced.
 */
import { test } from '@jest/globals';
import { afterThis } from '../../support/cleanup';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startExtProcServer } from '../../../internal/extproc/server';
import { drive } from '../engine/support';
import { spawn } from 'node:child_process';

test('socket mode, no takeover of a live socket, stale socket replaced', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-sock-'));
  afterThis(() => fs.rmSync(dir, { recursive: true, force: true }));
  const sock = path.join(dir, 'extproc.sock');
  const ctx = drive({}).session.ctx;
  const first = await startExtProcServer(ctx, { listen: `unix:${sock}` });
  try {
    assert.equal(fs.statSync(sock).mode & 0o777, 0o666);
    await assert.rejects(startExtProcServer(ctx, { listen: `unix:${sock}` }), /in use by another process/);
    assert.ok(fs.existsSync(sock), 'the live socket is still there');
  } finally {
    await first.close(100);
  }
  // A stale socket: its process was SIGKILLed and never unlinked it.
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`]);
  await new Promise<void>((r) => child.stdout.once('data', () => r()));
  child.kill('SIGKILL');
  await new Promise<void>((r) => child.once('exit', () => r()));
  assert.ok(fs.existsSync(sock), 'the killed process left its socket file');
  const second = await startExtProcServer(ctx, { listen: `unix:${sock}` });
  await second.close(100);
});
