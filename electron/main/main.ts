// Electron main process: one window, strict by default. It loads the renderer from the app://
// protocol, relays the API to the engine's utility process (see supervisor.ts), and refuses
// everything else: navigation away, new windows, permissions, webviews, IPC from any frame
// that is not the app's own page.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { app, BrowserWindow, ipcMain, protocol, session, utilityProcess } from 'electron';
import { APP_ORIGIN } from '../../shared/api/bridge.js';
import { IPC_EVENT_CHANNEL } from '../../shared/api/methods.js';
import { createIpcHandlers, isTrustedSender } from './ipc.js';
import { resolveAppRequest } from './protocol.js';
import { Supervisor, type ChildLike } from './supervisor.js';
import type { HostReply, HostRequest } from '../utility/protocol.js';

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

protocol.registerSchemesAsPrivileged([{ scheme: 'app', privileges: { standard: true, secure: true, supportFetchAPI: true, corsEnabled: true } }]);

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, '..', '..');
const rendererDir = path.join(dist, 'renderer');
const preload = path.join(dist, 'electron', 'preload', 'preload.cjs');
const hostScript = path.join(dist, 'electron', 'utility', 'engine-host.js');

function dataDirFromArgs(): string {
  const i = process.argv.indexOf('--data-dir');
  if (i >= 0 && process.argv[i + 1]) return path.resolve(process.argv[i + 1]);
  if (process.env.PARALLAX_HOME) return path.resolve(process.env.PARALLAX_HOME);
  // The same folder the CLI uses by default, so both see one database.
  return app.getPath('userData');
}

app.setName('Parallax');
const dataDir = dataDirFromArgs();
const windows = new Set<BrowserWindow>();

const supervisor = new Supervisor({
  fork(): ChildLike {
    const child = utilityProcess.fork(hostScript, ['--data-dir', dataDir], { serviceName: 'Parallax engine', stdio: 'inherit' });
    return {
      postMessage: (msg: HostRequest) => child.postMessage(msg),
      on: ((event: 'message' | 'exit', cb: (x: never) => void) => {
        if (event === 'message') child.on('message', (m: HostReply) => (cb as (m: HostReply) => void)(m));
        else child.on('exit', (code: number) => (cb as (c: number) => void)(code));
      }) as ChildLike['on'],
      kill: () => child.kill(),
    };
  },
  onEvent(event) {
    for (const w of windows) if (!w.isDestroyed()) w.webContents.send(IPC_EVENT_CHANNEL, event);
  },
  log: (line) => process.stderr.write(`parallax: ${line}\n`),
});

function createWindow(): void {
  const win = new BrowserWindow({
    width: 1440,
    height: 920,
    show: false,
    backgroundColor: '#0b0f14',
    title: 'Parallax',
    webPreferences: {
      preload,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      spellcheck: false,
    },
  });
  windows.add(win);
  win.on('closed', () => windows.delete(win));
  win.once('ready-to-show', () => win.show());
  void win.loadURL(`${APP_ORIGIN}/index.html`);
}

app.on('web-contents-created', (_e, contents) => {
  contents.on('will-navigate', (event, url) => {
    if (!isTrustedSender(url)) event.preventDefault();
  });
  contents.on('will-redirect', (event, url) => {
    if (!isTrustedSender(url)) event.preventDefault();
  });
  contents.setWindowOpenHandler(() => ({ action: 'deny' }));
  contents.on('will-attach-webview', (event) => event.preventDefault());
});

app.whenReady().then(() => {
  supervisor.start();
  session.defaultSession.setPermissionRequestHandler((_wc, _permission, callback) => callback(false));
  session.defaultSession.setPermissionCheckHandler(() => false);
  protocol.handle('app', async (request) => {
    const r = resolveAppRequest(request.url, rendererDir);
    if (r.kind === 'deny') return new Response(r.reason, { status: r.status, headers: { 'Content-Type': 'text/plain' } });
    if (r.kind === 'media') {
      try {
        const m = await supervisor.media(r.sha256, r.variant);
        return new Response(Buffer.from(m.bytes), { headers: { ...r.headers, 'Content-Type': m.mime } });
      } catch (err) {
        return new Response(err instanceof Error ? err.message : String(err), { status: 404, headers: { 'Content-Type': 'text/plain' } });
      }
    }
    try {
      const bytes = await fs.promises.readFile(r.file);
      return new Response(bytes, { headers: { ...r.headers, 'Content-Type': MIME[path.extname(r.file)] ?? 'application/octet-stream' } });
    } catch {
      return new Response('not found', { status: 404, headers: { 'Content-Type': 'text/plain' } });
    }
  });
  for (const [channel, handler] of createIpcHandlers((m, p) => supervisor.call(m, p))) {
    ipcMain.handle(channel, (event, payload: unknown) => handler(event.senderFrame?.url, payload));
  }
  createWindow();
  app.on('activate', () => {
    if (BrowserWindow.getAllWindows().length === 0) createWindow();
  });
});

app.on('window-all-closed', () => {
  supervisor.stop();
  app.quit();
});
