// `parallax mcp guard`: a real SDK client -> the guard (a real child process) -> a real SDK
// fixture server, with a real trained data folder. What the engine decides for each fixture
// image is measured first (the probe) and the guard is held to it, so these tests check the
// guard, not the detectors' current calibration.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { CreateMessageRequestSchema, LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { Engine, type ItemError, type ScanItem } from '../electron/engine/engine.js';
import { LineReader, recoverId } from '../electron/engine/mcp/framing.js';
import { GuardCore, type GuardPolicy, type Scanner } from '../electron/engine/mcp/guard-core.js';
import { measureGuardLatency } from '../electron/engine/mcp/bench.js';
import { repoRoot } from './helpers/repo-root.js';
import {
  b64,
  childEnv,
  connect,
  connectGuard,
  fixtureServer,
  mcpEntry,
  nodeArgs,
  prepare,
  type Connected,
  type Prepared,
} from './fixtures/mcp-harness.js';
import type { MEDIA } from './fixtures/mcp-media.js';

type Key = keyof typeof MEDIA;
type Block = { type: string; text?: string; data?: string; mimeType?: string; _meta?: Record<string, { action: string }>; resource?: Record<string, unknown> };
type ToolResult = { content: Block[]; isError?: boolean };

const IMAGES: Key[] = ['clean', 'noise', 'stripes', 'grid', 'document', 'typographic'];

let prep: Prepared;
/** The engine's verdict for each fixture, or why it could not scan it (`error`). */
const probe = {} as Record<Key, { decision: ScanItem['decision']; risk: number; sha256: string; error?: string }>;
let guard: Connected;
let progressLogs: string[] = [];

before(async () => {
  // The demo baseline is only 50 photos, and with the default block threshold (0.7) no generated
  // image reaches block (uniform noise is allowed). Lower thresholds let every policy path run
  // on real verdicts; the probe below records what each image really gets.
  prep = await prepare('guard', { block: 0.55, review: 0.3 });
  const engine = await Engine.open({ dataDir: prep.dataDir });
  try {
    for (const key of [...IMAGES, 'tone'] as Key[]) {
      const r = await engine.scanBytes(fs.readFileSync(prep.media[key]), { name: key, source: 'test-probe' });
      const sha256 = createHash('sha256').update(fs.readFileSync(prep.media[key])).digest('hex');
      probe[key] = 'decision' in r ? { decision: r.decision, risk: r.risk, sha256 } : { decision: 'allow', risk: NaN, sha256, error: r.reason };
    }
  } finally {
    await engine.close();
  }
  guard = await connectGuard(prep, ['--max-message-mb', '1'], { capabilities: { capabilities: { sampling: {} } } });
  guard.client.setRequestHandler(CreateMessageRequestSchema, async () => ({
    model: 'test-model',
    role: 'assistant',
    content: { type: 'text', text: 'hi there' },
  }));
  guard.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    progressLogs.push(String(n.params.data));
  });
});

after(async () => {
  await guard?.client.close();
  if (prep) fs.rmSync(prep.dataDir, { recursive: true, force: true });
});

/** Whether `block` is what the policy calls for, given the probe's verdict for `key`. */
function assertTreatment(block: Block, key: Key, review: 'hold' | 'pass', payload: () => string | undefined = () => block.data): boolean {
  const p = probe[key];
  const passes = p.decision === 'allow' || (p.decision === 'review' && review === 'pass');
  if (passes) {
    assert.equal(payload(), b64(prep.media[key]), `${key} (${p.decision}) must arrive byte for byte`);
    return false;
  }
  assert.equal(block.type, 'text', `${key} (${p.decision}) must be replaced by a notice`);
  assert.match(block.text!, p.decision === 'block' ? /withheld: blocked/ : /withheld: held for analyst review/);
  assert.ok(block.text!.includes(p.sha256), `the notice for ${key} names its sha256`);
  assert.match(block.text!, /risk \d\.\d\d; top signals: /);
  assert.equal(block._meta?.['parallax/guard']?.action, p.decision === 'block' ? 'blocked' : 'held');
  return true;
}

test('the probe: what the engine decides for each fixture image', (t) => {
  for (const key of IMAGES) t.diagnostic(`${key}: ${probe[key].decision} (risk ${probe[key].risk.toFixed(3)})`);
  assert.equal(probe.clean.decision, 'allow', 'a held-out demo photo is allowed');
  const decisions = new Set(IMAGES.map((k) => probe[k].decision));
  assert.ok(decisions.has('block'), 'some fixture image must be blocked for the block path to be tested');
  assert.ok(decisions.has('review'), 'some fixture image must go to review for the hold/pass paths to be tested');
});

test('initialize, tools/list, resources/list and prompts/list pass through', async () => {
  assert.equal(guard.client.getServerVersion()?.name, 'parallax-test-server');
  const tools = (await guard.client.listTools()).tools.map((t) => t.name).sort();
  assert.deepEqual(tools, ['ask_model', 'audio', 'bad_base64', 'big_text', 'echo', 'embedded', 'garbage_then_text', 'image', 'mixed', 'progress', 'slow', 'slow_status'].sort());
  const resources = (await guard.client.listResources()).resources.map((r) => r.uri).sort();
  assert.deepEqual(resources, ['fixture://photo.jpg', 'fixture://readme.txt', 'fixture://stripes.png']);
  const prompts = (await guard.client.listPrompts()).prompts.map((p) => p.name);
  assert.deepEqual(prompts, ['look_at_this']);
  await guard.waitForStderr(/parallax-test-server: ready/);
});

test('tool results: each image is passed untouched or replaced, as its verdict says', async () => {
  for (const key of IMAGES) {
    const r = (await guard.client.callTool({ name: 'image', arguments: { name: path.basename(prep.media[key]) } })) as ToolResult;
    assert.equal(r.content.length, 1);
    const withheld = assertTreatment(r.content[0], key, 'hold');
    assert.equal(r.isError === true, withheld, `${key}: isError is set exactly when content was withheld`);
    if (!withheld) assert.equal(r.content[0].mimeType, key === 'clean' ? 'image/jpeg' : 'image/png');
  }
});

test('mixed content: text and allowed images untouched, flagged ones replaced in place', async () => {
  const r = (await guard.client.callTool({ name: 'mixed', arguments: {} })) as ToolResult;
  assert.equal(r.content.length, 4);
  assert.deepEqual(r.content[0], { type: 'text', text: 'before' });
  assert.deepEqual(r.content[3], { type: 'text', text: 'after' });
  assert.equal(r.content[1].data, b64(prep.media.clean));
  const withheld = assertTreatment(r.content[2], 'stripes', 'hold');
  assert.equal(r.isError === true, withheld);
});

test('audio: not scannable yet, so it takes the fail-closed path and says why', async (t) => {
  const r = (await guard.client.callTool({ name: 'audio', arguments: {} })) as ToolResult;
  if (!probe.tone.error) {
    // The engine has learnt audio: the guard then treats it like any image.
    t.diagnostic(`the engine scans audio now: ${probe.tone.decision}`);
    assertTreatment(r.content[0], 'tone', 'hold');
    return;
  }
  t.diagnostic(`engine on WAV: ${probe.tone.error}`);
  assert.equal(r.isError, true);
  assert.equal(r.content[0].type, 'text');
  assert.match(r.content[0].text!, /^\[Parallax guard\] Audio withheld: scanning failed \(audio scanning is not available: /);
  assert.match(r.content[0].text!, /fails closed/);
  assert.ok(r.content[0].text!.includes(probe.tone.sha256));
  assert.equal(r.content[0]._meta?.['parallax/guard']?.action, 'scan_failed');
});

test('embedded resources: image blobs are scanned, even when their MIME type hides them', async () => {
  const r = (await guard.client.callTool({ name: 'embedded', arguments: {} })) as ToolResult;
  assert.equal(r.content.length, 3);
  const withheld = assertTreatment(r.content[0], 'stripes', 'hold', () => r.content[0].resource?.blob as string);
  assert.equal(r.isError === true, withheld);
  assert.equal(r.content[1].resource?.blob, b64(prep.media.clean));
  assert.deepEqual(r.content[2], { type: 'resource', resource: { uri: 'fixture://embedded/notes.txt', mimeType: 'text/plain', text: 'just notes' } });
});

test('an image block that is not base64 fails closed', async () => {
  const r = (await guard.client.callTool({ name: 'bad_base64', arguments: {} })) as ToolResult;
  assert.equal(r.isError, true);
  assert.match(r.content[0].text!, /scanning failed \(the payload is not valid base64\); the guard fails closed/);
});

test('resources/read: blobs scanned, text untouched', async () => {
  const photo = await guard.client.readResource({ uri: 'fixture://photo.jpg' });
  assert.deepEqual(photo.contents, [{ uri: 'fixture://photo.jpg', mimeType: 'image/jpeg', blob: b64(prep.media.clean) }]);
  const stripes = await guard.client.readResource({ uri: 'fixture://stripes.png' });
  const c = stripes.contents[0] as Block & { blob?: string; uri: string };
  if (probe.stripes.decision === 'allow') assert.equal(c.blob, b64(prep.media.stripes));
  else {
    assert.equal(c.uri, 'fixture://stripes.png');
    assert.equal(c.mimeType, 'text/plain');
    assert.equal('blob' in c, false);
    assert.ok(c.text!.includes(probe.stripes.sha256));
  }
  const readme = await guard.client.readResource({ uri: 'fixture://readme.txt' });
  assert.deepEqual(readme.contents, [{ uri: 'fixture://readme.txt', mimeType: 'text/plain', text: 'hello from the fixture server' }]);
});

test('prompts/get: images in messages are scanned', async () => {
  const p = await guard.client.getPrompt({ name: 'look_at_this' });
  assert.equal(p.messages.length, 3);
  assert.deepEqual(p.messages[0].content, { type: 'text', text: 'Describe these images.' });
  assertTreatment(p.messages[1].content as Block, 'stripes', 'hold');
  assert.equal((p.messages[2].content as Block).data, b64(prep.media.clean));
});

test('progress and logging notifications pass through, in order', async () => {
  progressLogs = [];
  const seen: number[] = [];
  const r = (await guard.client.callTool({ name: 'progress', arguments: { steps: 5 } }, undefined, {
    onprogress: (p) => seen.push(p.progress),
  })) as ToolResult;
  assert.deepEqual(r.content, [{ type: 'text', text: 'done 5' }]);
  assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  assert.deepEqual(progressLogs, ['step 1', 'step 2', 'step 3', 'step 4', 'step 5']);
});

test('cancellation reaches the server', async () => {
  const ac = new AbortController();
  const call = guard.client.callTool({ name: 'slow', arguments: { ms: 20_000 } }, undefined, { signal: ac.signal });
  await new Promise((r) => setTimeout(r, 300));
  ac.abort('test cancels');
  await assert.rejects(call);
  let status = '';
  for (let i = 0; i < 40 && status !== 'cancelled'; i++) {
    const r = (await guard.client.callTool({ name: 'slow_status', arguments: {} })) as ToolResult;
    status = r.content[0].text!;
    if (status !== 'cancelled') await new Promise((res) => setTimeout(res, 50));
  }
  assert.equal(status, 'cancelled');
});

test('server -> client requests (sampling) and their answers pass through', async () => {
  const r = (await guard.client.callTool({ name: 'ask_model', arguments: {} })) as ToolResult;
  assert.deepEqual(r.content, [{ type: 'text', text: 'model said: hi there' }]);
});

test('malformed lines from the server are dropped with a log line; the proxy keeps going', async () => {
  const r = (await guard.client.callTool({ name: 'garbage_then_text', arguments: {} })) as ToolResult;
  assert.deepEqual(r.content, [{ type: 'text', text: 'still here' }]);
  await guard.waitForStderr(/from the server: the server sent a message that is not valid JSON/);
  await guard.waitForStderr(/from the server: a JSON number is not a JSON-RPC message/);
});

test('oversized messages either way get a JSON-RPC error; the next request still works', async () => {
  await assert.rejects(guard.client.callTool({ name: 'big_text', arguments: { bytes: 2_000_000 } }), (err: Error) => {
    assert.match(err.message, /the server sent a message of \d+ bytes, over the guard's limit of 1048576 bytes/);
    return true;
  });
  await assert.rejects(guard.client.callTool({ name: 'echo', arguments: { text: 'y'.repeat(2_000_000) } }), (err: Error) => {
    assert.match(err.message, /a message of \d+ bytes is over the guard's limit of 1048576 bytes/);
    return true;
  });
  const ok = (await guard.client.callTool({ name: 'echo', arguments: { text: 'still alive' } })) as ToolResult;
  assert.deepEqual(ok.content, [{ type: 'text', text: 'still alive' }]);
});

test('--review pass --fail open: review passes untouched (and is queued), audio passes, block still withheld', async () => {
  const g = await connectGuard(prep, ['--review', 'pass', '--fail', 'open']);
  try {
    for (const key of IMAGES) {
      const r = (await g.client.callTool({ name: 'image', arguments: { name: path.basename(prep.media[key]) } })) as ToolResult;
      const withheld = assertTreatment(r.content[0], key, 'pass');
      assert.equal(withheld, probe[key].decision === 'block');
      assert.equal(r.isError === true, withheld);
    }
    const audio = (await g.client.callTool({ name: 'audio', arguments: {} })) as ToolResult;
    if (probe.tone.error) {
      assert.equal(audio.isError, undefined);
      assert.equal(audio.content[0].data, b64(prep.media.tone));
      await g.waitForStderr(/audio scanning is not available: .*passed through unscanned \(--fail open\)/);
    } else assertTreatment(audio.content[0], 'tone', 'pass');
  } finally {
    await g.client.close();
  }
});

test('every guard verdict is in the data folder with source mcp-guard; flagged media is kept for the analyst', () => {
  const db = new Database(path.join(prep.dataDir, 'parallax.db'), { readonly: true });
  const rows = db
    .prepare('SELECT v.decision, v.source, v.path, i.sha256 FROM verdicts v JOIN items i ON i.id = v.item_id')
    .all() as { decision: string; source: string; path: string | null; sha256: string }[];
  db.close();
  const guardRows = rows.filter((r) => r.source !== 'test-probe');
  assert.ok(guardRows.length >= IMAGES.length * 2);
  for (const r of guardRows) assert.equal(r.source, 'mcp-guard', `verdict for ${r.path}`);
  for (const key of IMAGES) {
    const mine = guardRows.filter((r) => r.sha256 === probe[key].sha256);
    assert.ok(mine.length >= 2, `${key} was scanned by both guards`);
    for (const r of mine) assert.equal(r.decision, probe[key].decision, `${key}: the guard's verdict is the engine's`);
    if (probe[key].decision !== 'allow') {
      const kept = fs.readdirSync(path.join(prep.dataDir, 'mcp-quarantine')).filter((f) => f.startsWith(probe[key].sha256));
      assert.equal(kept.length, 1, `a copy of flagged ${key} is kept`);
    }
  }
  assert.ok(guardRows.some((r) => r.path === "mcp:tools/call 'embedded' content[1] (resource fixture://embedded/photo.bin)"));
  assert.ok(guardRows.some((r) => r.path === 'mcp:resources/read fixture://photo.jpg'));
  assert.ok(guardRows.some((r) => r.path === "mcp:prompts/get 'look_at_this' messages[2]"));
  if (probe.tone.error) assert.equal(rows.filter((r) => r.sha256 === probe.tone.sha256).length, 0, 'unscannable audio has no verdict');
});

// ---- the wire, byte by byte ---------------------------------------------------------------------

class RawPeer {
  readonly lines: string[] = [];
  stderr = '';
  private waiters: (() => void)[] = [];
  constructor(readonly proc: ChildProcessWithoutNullStreams) {
    let buf = '';
    proc.stdout.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        this.lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
        for (const w of this.waiters.splice(0)) w();
      }
    });
    proc.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
  }
  send(line: string): void {
    this.proc.stdin.write(`${line}\n`);
  }
  async reply(id: string | number, timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find((l) => {
        try {
          return (JSON.parse(l) as { id?: unknown }).id === id;
        } catch {
          return false;
        }
      });
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no reply for id ${JSON.stringify(id)}; got ${this.lines.map((l) => l.slice(0, 120)).join(' | ')}\n${this.stderr}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }
  async waitForStderr(re: RegExp, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this.stderr)) {
      if (Date.now() > deadline) throw new Error(`standard error never matched ${re}:\n${this.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  async close(): Promise<number | null> {
    this.proc.stdin.end();
    return new Promise((r) => this.proc.once('close', (code) => r(code)));
  }
}

const INIT = JSON.stringify({
  jsonrpc: '2.0',
  id: 0,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
});
const INITIALIZED = JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' });

test('raw wire: untouched messages are forwarded byte for byte; malformed and oversized input gets errors', async () => {
  const spawnRaw = (args: string[]) =>
    new RawPeer(spawn(process.execPath, args, { env: childEnv(), cwd: repoRoot(), stdio: ['pipe', 'pipe', 'pipe'] }));
  const direct = spawnRaw([...nodeArgs(), fixtureServer, prep.mediaDir]);
  const guarded = spawnRaw([
    ...nodeArgs(), mcpEntry, 'guard', '--data-dir', prep.dataDir, '--max-message-mb', '1', '--',
    process.execPath, ...nodeArgs(), fixtureServer, prep.mediaDir,
  ]);
  try {
    const call = (id: string | number, name: string, args: object) =>
      JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });
    for (const peer of [direct, guarded]) {
      peer.send(INIT);
      await peer.reply(0);
      peer.send(INITIALIZED);
      peer.send(call('clean-1', 'image', { name: 'clean.jpg' }));
      peer.send(call(2, 'mixed', {}));
    }
    assert.equal(await guarded.reply(0), await direct.reply(0), 'initialize result is forwarded verbatim');
    assert.equal(await guarded.reply('clean-1'), await direct.reply('clean-1'), 'an allowed image result is the same bytes');
    const mixedDirect = await direct.reply(2);
    const mixedGuarded = await guarded.reply(2);
    assert.equal(mixedGuarded === mixedDirect, probe.stripes.decision === 'allow');

    // A request cut short: its id can still be read, so it gets a parse error.
    guarded.send('{"jsonrpc":"2.0","id":77,"method":"tools/list","params":{');
    const parseError = JSON.parse(await guarded.reply(77)) as { error: { code: number; message: string } };
    assert.equal(parseError.error.code, -32700);
    assert.match(parseError.error.message, /not valid JSON/);
    // Garbage with no id: dropped, logged.
    guarded.send('hello, is this MCP?');
    // Over the 1 MiB cap, id at the end (where the SDK puts it).
    guarded.send(`{"method":"tools/call","params":{"name":"echo","arguments":{"text":"${'z'.repeat(1_200_000)}"}},"jsonrpc":"2.0","id":"big-1"}`);
    const tooBig = JSON.parse(await guarded.reply('big-1')) as { error: { code: number; message: string } };
    assert.equal(tooBig.error.code, -32600);
    assert.match(tooBig.error.message, /over the guard's limit of 1048576 bytes/);
    // String and number ids are different requests.
    guarded.send(call('5', 'echo', { text: 'five as a string' }));
    guarded.send(call(5, 'echo', { text: 'five as a number' }));
    assert.match(await guarded.reply('5'), /five as a string/);
    assert.match(await guarded.reply(5), /five as a number/);
    await guarded.waitForStderr(/from the client: not valid JSON .*; dropped \(no request id to answer\)/);
  } finally {
    await direct.close();
    const code = await guarded.close();
    assert.equal(code, 0, 'the guard exits with the server’s code once the client hangs up');
  }
});

test("the guard exits with the server's exit code, and says so when the server cannot start", async () => {
  const run = (cmd: string[]) =>
    spawnSync(process.execPath, [...nodeArgs(), mcpEntry, 'guard', '--data-dir', prep.dataDir, '--', ...cmd], {
      env: childEnv(),
      input: '',
      encoding: 'utf8',
      timeout: 30_000,
    });
  const exit7 = run([process.execPath, '-e', 'process.stderr.write("bye\\n"); process.exit(7)']);
  assert.equal(exit7.status, 7, exit7.stderr);
  assert.match(exit7.stderr, /bye/);
  const missing = run(['/nonexistent/mcp-server-binary']);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /cannot start '\/nonexistent\/mcp-server-binary': .*ENOENT/);
  const usage = spawnSync(process.execPath, [...nodeArgs(), mcpEntry, 'guard', '--review', 'maybe', '--', 'x'], { env: childEnv(), encoding: 'utf8' });
  assert.equal(usage.status, 2);
  assert.match(usage.stderr, /--review must be hold or pass, got 'maybe'/);
});

test('through bin/parallax.js, once main.ts routes `parallax mcp`', async (t) => {
  const bin = path.join(repoRoot(), 'bin', 'parallax.js');
  const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8', env: childEnv() });
  if (!/\bmcp\b/.test(help.stdout)) {
    t.skip('`parallax --help` does not list mcp yet (main.ts wiring pending)');
    return;
  }
  const g = await connect(process.execPath, [
    bin, 'mcp', 'guard', '--data-dir', prep.dataDir, '--',
    process.execPath, ...nodeArgs(), fixtureServer, prep.mediaDir,
  ]);
  try {
    const clean = (await g.client.callTool({ name: 'image', arguments: { name: 'clean.jpg' } })) as ToolResult;
    assert.equal(clean.content[0].data, b64(prep.media.clean));
    const stripes = (await g.client.callTool({ name: 'image', arguments: { name: 'stripes.png' } })) as ToolResult;
    assertTreatment(stripes.content[0], 'stripes', 'hold');
  } finally {
    await g.client.close();
  }
});

test('measureGuardLatency: direct vs guarded round-trips', async (t) => {
  const images = [prep.media.noise, prep.media.typographic, prep.media.grid];
  const r = await measureGuardLatency({ dataDir: prep.dataDir, images });
  t.diagnostic(JSON.stringify(r));
  for (const s of [r.direct_ms, r.guarded_ms]) assert.ok(s.p50 > 0 && s.p95 >= s.p50);
  assert.ok(Number.isFinite(r.added_ms.p50) && Number.isFinite(r.added_ms.p95));
});

// ---- the message logic, without processes ---------------------------------------------------------

function fakeItem(decision: ScanItem['decision'], sha256 = 'a'.repeat(64)): ScanItem {
  return {
    path: null,
    sha256,
    modality: 'image',
    decision,
    risk: decision === 'block' ? 0.9 : decision === 'review' ? 0.5 : 0.1,
    p: 0.01,
    signals: { knn: { raw: 1, risk: 0.9, p: 0.01, weight: 1, share: 1 } },
    neighbours: [],
    verdict_id: 1,
    duration_ms: 1,
  };
}

function harness(scanner: Scanner, policy: Partial<GuardPolicy> = {}) {
  const toServer: string[] = [];
  const toClient: string[] = [];
  const logs: string[] = [];
  const core = new GuardCore({ review: 'hold', fail: 'closed', timeoutMs: 1000, maxMessageBytes: 1 << 20, ...policy }, scanner, {
    toServer: (l) => void toServer.push(l.toString()),
    toClient: (l) => void toClient.push(l.toString()),
    log: (l) => void logs.push(l),
  });
  const client = (o: unknown) => core.clientLine(Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)));
  const server = (o: unknown) => core.serverLine(Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)));
  return { core, toServer, toClient, logs, client, server };
}

const PNG_B64 = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4]).toString('base64');
const image = { type: 'image', data: PNG_B64, mimeType: 'image/png' };
const byDecision = (d: ScanItem['decision']): Scanner => async () => fakeItem(d);

test('core: batches are tracked per element and only altered elements are re-serialised', async () => {
  const h = harness(byDecision('block'));
  h.client([
    { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'a' } },
    { jsonrpc: '2.0', id: 2, method: 'tools/list' },
  ]);
  assert.equal(h.toServer.length, 1);
  const batch = [
    { jsonrpc: '2.0', id: 1, result: { content: [image] } },
    { jsonrpc: '2.0', id: 2, result: { tools: [], content: [image] } },
  ];
  h.server(batch);
  await h.core.idle();
  const out = JSON.parse(h.toClient[0]) as { result: { content: Block[]; isError?: boolean } }[];
  assert.equal(out[0].result.isError, true);
  assert.equal(out[0].result.content[0].type, 'text');
  assert.deepEqual(out[1], batch[1], 'a tools/list answer is never inspected');
});

test('core: a response being scanned holds later server messages back; client traffic keeps flowing', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const h = harness(async () => {
    await gate;
    return fakeItem('allow');
  });
  h.client({ jsonrpc: '2.0', id: 'x', method: 'tools/call', params: { name: 'a' } });
  const response = JSON.stringify({ jsonrpc: '2.0', id: 'x', result: { content: [image] } });
  h.server(response);
  h.server({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'after' } });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(h.toClient.length, 0, 'nothing overtakes the response being scanned');
  h.client({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'x' } });
  assert.equal(h.toServer.length, 2, 'client -> server is not held');
  release();
  await h.core.idle();
  assert.equal(h.toClient[0], response, 'allowed: the very same bytes');
  assert.match(h.toClient[1], /"after"/);
});

test('core: a scan that times out fails closed (notice says so) or open (passes)', async () => {
  const never: Scanner = () => new Promise<ScanItem>(() => undefined);
  for (const fail of ['closed', 'open'] as const) {
    const h = harness(never, { fail, timeoutMs: 30 });
    h.client({ jsonrpc: '2.0', id: 1, method: 'resources/read', params: { uri: 'x://a.png' } });
    const msg = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { contents: [{ uri: 'x://a.png', mimeType: 'image/png', blob: PNG_B64 }] } });
    h.server(msg);
    await h.core.idle();
    if (fail === 'open') assert.equal(h.toClient[0], msg);
    else {
      const c = (JSON.parse(h.toClient[0]) as { result: { contents: { text: string }[] } }).result.contents[0];
      assert.match(c.text, /scanning failed \(scan timed out after 30 ms\); the guard fails closed/);
    }
  }
});

test('core: string and number ids are distinct; unmatched responses are inspected as anything', async () => {
  const h = harness(byDecision('block'));
  h.client({ jsonrpc: '2.0', id: '1', method: 'tools/call', params: { name: 'a' } });
  h.client({ jsonrpc: '2.0', id: 1, method: 'tools/list' });
  h.server({ jsonrpc: '2.0', id: 1, result: { content: [image] } });
  h.server({ jsonrpc: '2.0', id: '1', result: { content: [image] } });
  h.server({ jsonrpc: '2.0', id: 'never-asked', result: { messages: [{ role: 'user', content: image }] } });
  await h.core.idle();
  assert.match(h.toClient[0], /"type":"image"/, 'the tools/list answer (number id) is not inspected');
  assert.match(h.toClient[1], /withheld: blocked/, 'the tools/call answer (string id) is');
  assert.match(h.toClient[2], /withheld: blocked/, 'an answer to nothing is inspected too');
});

test('core: the text blocks beside an image (tool result or prompt message) reach the scanner, for the CLIP check', async () => {
  const seen: (string | undefined)[] = [];
  const h = harness(async (_bytes, _name, text) => {
    seen.push(text);
    return fakeItem('allow');
  });
  h.client({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'a' } });
  h.server({ jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'A red bus' }, image, { type: 'text', text: 'on a street' }] } });
  h.client({ jsonrpc: '2.0', id: 2, method: 'prompts/get', params: { name: 'p' } });
  h.server({ jsonrpc: '2.0', id: 2, result: { messages: [{ role: 'user', content: [image] }] } });
  await h.core.idle();
  assert.deepEqual(seen, ['A red bus\non a street', undefined]);
});

test('core: a scanner that throws, or an engine error, takes the failure path', async () => {
  const h = harness(async () => {
    throw new Error("baseline 'default' has no trained detector set");
  });
  h.client({ jsonrpc: '2.0', id: 1, method: 'prompts/get', params: { name: 'p' } });
  h.server({ jsonrpc: '2.0', id: 1, result: { messages: [{ role: 'user', content: image }] } });
  const h2 = harness(async (): Promise<ItemError> => ({ path: 'x', reason: 'corrupt image: bad', code: 'corrupt' }));
  h2.client({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'a' } });
  h2.server({ jsonrpc: '2.0', id: 1, result: { content: [image] } });
  await Promise.all([h.core.idle(), h2.core.idle()]);
  assert.match(h.toClient[0], /scanning failed \(baseline 'default' has no trained detector set\)/);
  assert.match(h2.toClient[0], /scanning failed \(corrupt image: bad \[corrupt\]\)/);
  assert.match(h2.toClient[0], /"isError":true/);
});

test('framing: split chunks, CRLF, oversized lines with their id recovered', () => {
  const lines: string[] = [];
  const big: { head: string; tail: string; bytes: number }[] = [];
  const r = new LineReader(
    64,
    (l) => lines.push(l.toString()),
    (o) => big.push({ head: o.head.toString(), tail: o.tail.toString(), bytes: o.bytes }),
  );
  r.push(Buffer.from('{"a":'));
  r.push(Buffer.from('1}\r\n{"b":2}\n{"id":'));
  r.push(Buffer.from(`"q","x":"${'y'.repeat(100)}`));
  r.push(Buffer.from('"}\n{"c":3}'));
  r.end();
  assert.deepEqual(lines, ['{"a":1}', '{"b":2}', '{"c":3}']);
  assert.equal(big.length, 1);
  assert.equal(big[0].bytes, 117);
  assert.equal(recoverId(big[0].head, big[0].tail), 'q');
  assert.equal(recoverId('{"result":{"x":1},"jsonrpc":"2.0","id":42}'), 42);
  assert.equal(recoverId('{"jsonrpc":"2.0","id":"a\\"b","method":"x"'), 'a"b');
  assert.equal(recoverId('{"result":{"content":[{"id":9}]'), undefined, 'a nested id is not trusted');
});
