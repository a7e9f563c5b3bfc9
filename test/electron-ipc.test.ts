// The Electron shell's wiring, tested from Node without the Electron binary: which IPC senders
// are trusted, the handler table (one per channel) over a real WorkbenchService, the real
// preload bundle run against a stand-in `electron` module, the app:// protocol's routing, the
// utility-process host, and the supervisor's restart with back-off.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import vm from 'node:vm';
import { ApiError } from '../shared/api/contract.js';
import { API_METHODS, IPC_EVENT_CHANNEL, ipcChannel } from '../shared/api/methods.js';
import { Engine } from '../electron/engine/engine.js';
import { WorkbenchService } from '../electron/engine/workbench/service.js';
import { createIpcHandlers, isTrustedSender } from '../electron/main/ipc.js';
import { appCsp, plotCsp, resolveAppRequest } from '../electron/main/protocol.js';
import { Supervisor, type ChildLike } from '../electron/main/supervisor.js';
import { createHost } from '../electron/utility/host.js';
import type { HostReply, HostRequest } from '../electron/utility/protocol.js';
import { repoRoot } from './helpers/repo-root.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-ipc-'));
let engine: Engine;
let service: WorkbenchService;

before(async () => {
  engine = await Engine.open({ dataDir: path.join(tmp, 'data') });
  service = await WorkbenchService.create({ engine, transport: 'ipc', demo: false });
});

after(async () => {
  await service?.close();
  await engine?.close();
});

test('only the app’s own page is a trusted IPC sender', () => {
  assert.equal(isTrustedSender('app://parallax/index.html'), true);
  assert.equal(isTrustedSender('app://parallax/index.html#/item/abc'), true);
  for (const url of [
    'app://plot/plot-frame.html',
    'app://parallax.evil/index.html',
    'app://parallax:8080/index.html',
    'http://127.0.0.1:3000/',
    'file:///work/main/dist/renderer/index.html',
    'devtools://devtools/bundled/inspector.html',
    'not a url',
    '',
    undefined,
    null,
  ]) {
    assert.equal(isTrustedSender(url), false, String(url));
  }
});

describe('the IPC handler table', () => {
  test('one handler per API method, each on its own channel', () => {
    const table = createIpcHandlers(async () => null);
    assert.deepEqual([...table.keys()].sort(), API_METHODS.map(ipcChannel).sort());
    assert.equal(new Set(table.keys()).size, API_METHODS.length);
  });

  test('an untrusted sender is refused before anything runs', async () => {
    let called = 0;
    const table = createIpcHandlers(async () => {
      called++;
      return null;
    });
    const res = await table.get(ipcChannel('status'))!('app://plot/plot-frame.html', {});
    assert.deepEqual(res.ok, false);
    assert.equal(!res.ok && res.error.code, 'unauthorized');
    assert.equal(called, 0);
  });

  test('errors travel as an envelope with their code', async () => {
    const table = createIpcHandlers(async (m) => {
      if (m === 'item') throw new ApiError('not_found', 'no item with sha256 x');
      throw new Error('boom');
    });
    const a = await table.get(ipcChannel('item'))!('app://parallax/index.html', {});
    assert.deepEqual(a, { ok: false, error: { code: 'not_found', message: 'no item with sha256 x' } });
    const b = await table.get(ipcChannel('queue'))!('app://parallax/index.html', {});
    assert.deepEqual(b, { ok: false, error: { code: 'internal', message: 'boom' } });
  });

  test('wired to a real service: validated requests, validated answers', async () => {
    const table = createIpcHandlers((m, p) => service.call(m, p));
    const ok = await table.get(ipcChannel('queue'))!('app://parallax/index.html', { limit: 5 });
    assert.equal(ok.ok, true);
    assert.deepEqual(ok.ok && (ok.result as { items: unknown[] }).items, []);
    const bad = await table.get(ipcChannel('queue'))!('app://parallax/index.html', { limit: 'five' });
    assert.equal(!bad.ok && bad.error.code, 'bad_request');
    assert.match(!bad.ok ? bad.error.message : '', /limit/);
  });
});

test('the built preload exposes exactly one function per method, each invoking its own channel', async () => {
  const bundle = path.join(repoRoot(), 'dist', 'electron', 'preload', 'preload.cjs');
  assert.ok(fs.existsSync(bundle), `${bundle} is built by 'npm run build'`);
  const exposed: Record<string, unknown> = {};
  const invoked: { channel: string; payload: unknown }[] = [];
  const listeners = new Map<string, ((e: unknown, v: unknown) => void)[]>();
  const fakeElectron = {
    contextBridge: { exposeInMainWorld: (key: string, api: unknown) => (exposed[key] = api) },
    ipcRenderer: {
      invoke: async (channel: string, payload: unknown) => {
        invoked.push({ channel, payload });
        return { ok: true, result: channel };
      },
      on: (channel: string, cb: (e: unknown, v: unknown) => void) => listeners.set(channel, [...(listeners.get(channel) ?? []), cb]),
      removeListener: (channel: string, cb: (e: unknown, v: unknown) => void) => listeners.set(channel, (listeners.get(channel) ?? []).filter((x) => x !== cb)),
    },
  };
  const requireReal = createRequire(bundle);
  const sandbox = {
    module: { exports: {} },
    exports: {},
    require: (id: string) => (id === 'electron' ? fakeElectron : requireReal(id)),
  };
  vm.runInNewContext(fs.readFileSync(bundle, 'utf8'), sandbox, { filename: bundle });
  const bridge = exposed.parallax as Record<string, (...a: unknown[]) => unknown>;
  assert.ok(bridge, 'window.parallax is exposed');
  assert.deepEqual(Object.keys(bridge).sort(), [...API_METHODS, 'onEvent'].sort());
  for (const m of API_METHODS) {
    const res = (await bridge[m]({ probe: m })) as { result: string };
    assert.equal(res.result, ipcChannel(m));
  }
  assert.deepEqual(invoked.map((i) => i.channel), API_METHODS.map(ipcChannel));
  const got: unknown[] = [];
  const off = bridge.onEvent((e: unknown) => got.push(e)) as () => void;
  for (const cb of listeners.get(IPC_EVENT_CHANNEL) ?? []) cb({ sender: 'ignored' }, { type: 'hello', at: 'now' });
  off();
  assert.deepEqual(got, [{ type: 'hello', at: 'now' }]);
  assert.equal((listeners.get(IPC_EVENT_CHANNEL) ?? []).length, 0, 'unsubscribing removes the listener');
});

describe('the app:// protocol', () => {
  const dir = path.join(repoRoot(), 'dist', 'renderer');

  test('the app origin serves the renderer with a strict CSP', () => {
    const r = resolveAppRequest('app://parallax/index.html', dir);
    assert.equal(r.kind, 'static');
    assert.equal(r.kind === 'static' && r.file, path.join(dir, 'index.html'));
    const csp = r.kind === 'static' ? r.headers['Content-Security-Policy'] : '';
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-eval|unsafe-inline/);
    assert.equal(csp, appCsp());
    assert.match(csp, /frame-src app:\/\/plot/);
  });

  test('media requests are relayed, validated', () => {
    const sha = 'a'.repeat(64);
    const r = resolveAppRequest(`app://parallax/media/${sha}/full`, dir);
    assert.deepEqual(r.kind === 'media' && [r.sha256, r.variant], [sha, 'full']);
    assert.equal(resolveAppRequest('app://parallax/media/xyz/thumb', dir).kind, 'deny');
    assert.equal(resolveAppRequest(`app://parallax/media/${sha}/original`, dir).kind, 'deny');
  });

  test('nothing outside the renderer folder, the chart origin serves only the chart frame', () => {
    // URL parsing folds %2e%2e away before we see it; what is left must stay inside the folder.
    const folded = resolveAppRequest('app://parallax/%2e%2e/%2e%2e/package.json', dir);
    assert.ok(folded.kind === 'deny' || (folded.kind === 'static' && folded.file.startsWith(dir + path.sep)), JSON.stringify(folded));
    assert.equal(resolveAppRequest('app://parallax/..%2f..%2fpackage.json', dir).kind, 'deny');
    assert.equal(resolveAppRequest('app://plot/index.html', dir).kind, 'deny');
    assert.equal(resolveAppRequest('app://plot/app.js', dir).kind, 'deny');
    const frame = resolveAppRequest('app://plot/plot-frame.html', dir);
    assert.equal(frame.kind, 'static');
    assert.equal(frame.kind === 'static' && frame.headers['Content-Security-Policy'], plotCsp());
    assert.match(plotCsp(), /frame-ancestors app:\/\/parallax/);
    assert.doesNotMatch(plotCsp(), /unsafe-eval/);
    assert.equal(resolveAppRequest('https://evil.example/index.html', dir).kind, 'deny');
  });
});

test('the utility host answers calls and media requests and forwards events', async () => {
  const sent: HostReply[] = [];
  let shutdown = 0;
  const handle = createHost(service, (m) => sent.push(m), () => shutdown++);
  handle({ type: 'call', id: 1, method: 'jobs', payload: {} });
  handle({ type: 'call', id: 2, method: 'item', payload: { sha256: 'b'.repeat(64) } });
  handle({ type: 'media', id: 3, sha256: 'c'.repeat(64), variant: 'thumb' });
  for (let i = 0; i < 100 && sent.filter((s) => s.type !== 'event').length < 3; i++) await new Promise((r) => setTimeout(r, 10));
  const byId = new Map(sent.filter((s): s is Exclude<HostReply, { type: 'event' }> => s.type !== 'event').map((s) => [s.id, s]));
  assert.equal(byId.get(1)?.ok, true);
  const two = byId.get(2)!;
  assert.equal(!two.ok && two.error.code, 'not_found');
  const three = byId.get(3)!;
  assert.equal(three.type, 'media');
  assert.equal(!three.ok && three.error.code, 'not_found');
  service.events.emit({ type: 'changed', what: 'queue' });
  assert.deepEqual(sent[sent.length - 1], { type: 'event', event: { type: 'changed', what: 'queue' } });
  handle({ type: 'shutdown', id: 0 });
  assert.equal(shutdown, 1);
});

describe('the supervisor', () => {
  class FakeChild implements ChildLike {
    readonly posted: HostRequest[] = [];
    private onMsg: ((m: HostReply) => void)[] = [];
    private onExit: ((c: number) => void)[] = [];
    postMessage(msg: HostRequest) {
      this.posted.push(msg);
    }
    on(event: 'message' | 'exit', cb: ((m: HostReply) => void) | ((c: number) => void)) {
      if (event === 'message') this.onMsg.push(cb as (m: HostReply) => void);
      else this.onExit.push(cb as (c: number) => void);
    }
    kill() {
      this.exit(0);
    }
    reply(m: HostReply) {
      for (const cb of this.onMsg) cb(m);
    }
    exit(code: number) {
      for (const cb of this.onExit) cb(code);
    }
  }

  test('relays calls and events; a crash fails what was in flight and restarts with back-off', async () => {
    const children: FakeChild[] = [];
    const delays: number[] = [];
    const events: unknown[] = [];
    const timers: (() => void)[] = [];
    const sup = new Supervisor({
      fork: () => {
        const c = new FakeChild();
        children.push(c);
        return c;
      },
      onEvent: (e) => events.push(e),
      baseDelayMs: 500,
      maxDelayMs: 4000,
      setTimer: (fn, ms) => {
        delays.push(ms);
        timers.push(fn);
      },
    });
    sup.start();
    const call = sup.call('status', {});
    const sent = children[0].posted[0];
    assert.equal(sent.type, 'call');
    children[0].reply({ type: 'result', id: sent.id, ok: true, result: { fine: true } });
    assert.deepEqual(await call, { fine: true });
    children[0].reply({ type: 'event', event: { type: 'hello', at: 'x' } });
    assert.deepEqual(events, [{ type: 'hello', at: 'x' }]);

    const failing = sup.call('queue', {});
    const failingId = children[0].posted[1].id;
    const refused = sup.call('jobs', {});
    children[0].reply({ type: 'result', id: failingId, ok: false, error: { code: 'bad_request', message: 'limit: nope' } });
    await assert.rejects(failing, (e: ApiError) => e.code === 'bad_request' && e.message === 'limit: nope');
    children[0].exit(1);
    await assert.rejects(refused, (e: ApiError) => e.code === 'unavailable' && /restarted/.test(e.message));
    await assert.rejects(sup.call('status', {}), (e: ApiError) => e.code === 'unavailable');
    for (let i = 0; i < 4; i++) {
      timers.shift()!();
      children[children.length - 1].exit(1);
    }
    assert.deepEqual(delays, [500, 1000, 2000, 4000, 4000]);
    assert.equal(children.length, 5);
    timers.shift()!();
    assert.equal(children.length, 6);
    sup.stop();
    assert.deepEqual(children[5].posted[children[5].posted.length - 1], { type: 'shutdown', id: 0 });
  });
});
