// Launches the real desktop app where an Electron binary and a display exist, and checks the
// window's security settings from the inside. Elsewhere (offline installs skip Electron's
// binary download; CI has no display) it is skipped, and says why.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { _electron as electron } from 'playwright-core';
import { findElectron } from '../electron/engine/cli/start-command.js';
import { repoRoot } from './helpers/repo-root.js';

// Callbacks given to win.evaluate run in the window; this file compiles without the DOM library.
declare const window: { location: { href: string } } & Record<string, unknown>;

const found = findElectron();
const skip = 'reason' in found ? `skipped: ${found.reason}; the IPC wiring is tested without Electron in electron-ipc.test.ts` : false;

test('the desktop window: sandboxed, isolated, no Node, the API over the preload bridge', { skip, timeout: 180_000 }, async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-electron-'));
  const app = await electron.launch({
    executablePath: (found as { path: string }).path,
    args: [repoRoot(), '--data-dir', dataDir],
  });
  try {
    const win = await app.firstWindow();
    await win.waitForSelector('nav[aria-label="views"]', { timeout: 120_000 });
    assert.equal(new URL(win.url()).origin, 'app://parallax');
    const inside = await win.evaluate(async () => {
      const w = window as unknown as { parallax?: Record<string, (p: unknown) => Promise<{ ok: boolean; result?: { transport?: string } }>>; require?: unknown; process?: unknown };
      const status = await w.parallax!.status({});
      return { hasRequire: typeof w.require, hasProcess: typeof w.process, keys: Object.keys(w.parallax ?? {}).length, transport: status.ok ? status.result?.transport : null };
    });
    assert.equal(inside.hasRequire, 'undefined');
    assert.equal(inside.hasProcess, 'undefined');
    assert.equal(inside.transport, 'ipc');
    assert.ok(inside.keys > 20);
    // New windows are refused too.
    const windows = await app.evaluate(async ({ BrowserWindow }) => {
      const w = BrowserWindow.getAllWindows()[0];
      await w.webContents.executeJavaScript("window.open('https://example.com/')");
      return BrowserWindow.getAllWindows().length;
    });
    assert.equal(windows, 1);
    // Navigation away from the app is refused.
    await win.evaluate(() => {
      window.location.href = 'https://example.com/';
    });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(new URL(win.url()).origin, 'app://parallax');
  } finally {
    await app.close();
  }
});

test('npm start without a usable Electron says why on stderr and serves the browser workbench, URL first', { skip: !skip ? 'an Electron binary is installed here' : false, timeout: 120_000 }, async () => {
  const { spawn } = await import('node:child_process');
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-start-'));
  const entry = path.join(repoRoot(), 'dist', 'test', 'fixtures', 'serve-entry.js');
  const child = spawn(process.execPath, [entry, '--via-start', '--data-dir', dataDir, '--no-demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    const first = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')));
      });
      child.on('exit', (code) => reject(new Error(`exited ${code} before printing a URL: ${stderr}`)));
    });
    assert.match(first, /^http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]{32,}$/);
    assert.match(stderr, /cannot open the desktop window: (no Electron binary|no display)/);
    const res = await fetch(`${new URL(first).origin}/api/status`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${new URL(first).searchParams.get('token')}` },
      body: '{}',
    });
    assert.equal(res.status, 200);
  } finally {
    child.kill('SIGINT');
    await new Promise((r) => child.once('exit', r));
  }
});
