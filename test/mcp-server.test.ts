// `parallax mcp serve`: a real SDK client talking to the server in a child process, on a data
// folder trained with the default configuration.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { DETECTION_SIGNALS } from '../shared/detectors/signals.js';
import { b64, childEnv, connect, mcpEntry, nodeArgs, prepare, type Connected, type Prepared } from './fixtures/mcp-harness.js';

type Text = { type: 'text'; text: string };
type Result = { content: Text[]; isError?: boolean; structuredContent?: Record<string, unknown> };
type Verdict = {
  sha256: string;
  decision: string;
  risk: number;
  p: number;
  source: string;
  path: string | null;
  signals: Record<string, { share: number; risk: number }>;
  neighbours: { sha256: string; distance: number }[];
  verdict_id: number;
};

let prep: Prepared;
let srv: Connected;

before(async () => {
  prep = await prepare('serve');
  srv = await connect(process.execPath, [...nodeArgs(), mcpEntry, 'serve', '--data-dir', prep.dataDir]);
});

after(async () => {
  await srv?.client.close();
  if (prep) fs.rmSync(prep.dataDir, { recursive: true, force: true });
});

const call = async (name: string, args: Record<string, unknown>) =>
  (await srv.client.callTool({ name, arguments: args })) as Result;

const sha = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

test('tools are listed with input and output schemas', async () => {
  const { tools } = await srv.client.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), ['get_verdict', 'list_flagged', 'scan_media']);
  for (const t of tools) assert.ok(t.outputSchema, `${t.name} declares its structured output`);
  assert.equal(srv.client.getServerVersion()?.name, 'parallax');
});

test('scan_media by path: a held-out photo is allowed, with signals, neighbours and sha256', async () => {
  const r = await call('scan_media', { path: prep.media.clean });
  assert.notEqual(r.isError, true, r.content[0]?.text);
  const v = r.structuredContent as unknown as Verdict;
  assert.equal(v.decision, 'allow');
  assert.equal(v.sha256, sha(prep.media.clean));
  assert.equal(v.path, prep.media.clean);
  assert.equal(v.source, 'mcp');
  assert.ok(v.risk >= 0 && v.risk <= 1);
  assert.deepEqual(Object.keys(v.signals).sort(), [...DETECTION_SIGNALS].sort());
  assert.equal(v.neighbours.length, 5);
  assert.match(r.content[0].text, /^allow — risk \d\.\d\d; top signals: .*; sha256 [0-9a-f]{64}/);
});

test('scan_media by base64, with a source; the verdict is what the engine says (recorded, not assumed)', async (t) => {
  for (const key of ['noise', 'stripes', 'typographic'] as const) {
    const r = await call('scan_media', { data: b64(prep.media[key]), mime_type: 'image/png', source: 'agent-x' });
    assert.notEqual(r.isError, true, r.content[0]?.text);
    const v = r.structuredContent as unknown as Verdict;
    t.diagnostic(`${key} (default thresholds): ${v.decision}, risk ${v.risk.toFixed(3)}`);
    assert.equal(v.sha256, sha(prep.media[key]));
    assert.equal(v.source, 'agent-x');
    assert.equal(v.path, null);
    assert.ok(['allow', 'review', 'block'].includes(v.decision));
  }
});

test('scan_media: bad input is a tool error naming the reason', async () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{}, /give `path` \(a file\) or `data`/],
    [{ path: prep.media.clean, data: 'AAAA', mime_type: 'image/png' }, /either `path` or `data`, not both/],
    [{ data: b64(prep.media.clean) }, /`data` needs `mime_type`/],
    [{ data: 'not base64 at all!', mime_type: 'image/png' }, /`data` is not valid base64/],
    [{ data: b64(prep.media.tone), mime_type: 'audio/wav' }, /audio scanning is not available/],
    [{ data: 'aGVsbG8=', mime_type: 'text/plain' }, /mime_type 'text\/plain' is not an image type/],
    [{ data: Buffer.from('just some text, not an image').toString('base64'), mime_type: 'image/png' }, /<bytes>: .*\[\w+\]/],
    [{ path: path.join(prep.mediaDir, 'missing.png') }, /missing\.png: no such file/],
    [{ path: prep.mediaDir }, /not a regular file/],
    // Audio files are routed to the audio path now; this baseline has no audio detector set.
    [{ path: prep.media.tone }, /tone\.wav: .*no trained audio detector set/],
    [{ path: prep.media.clean, source: 'bad source!' }, /invalid source 'bad source!'/],
    [{ path: 42 }, /Input validation error/],
  ];
  for (const [args, reason] of cases) {
    const r = await call('scan_media', args);
    assert.equal(r.isError, true, `${JSON.stringify(args).slice(0, 80)} must fail`);
    assert.match(r.content[0].text, reason);
  }
});

test('get_verdict: the latest verdict by sha256, or a clear unknown', async () => {
  const s = sha(prep.media.stripes);
  const r = await call('get_verdict', { sha256: s.toUpperCase() });
  assert.notEqual(r.isError, true, r.content[0]?.text);
  const v = r.structuredContent as unknown as Verdict & { created_at: string; labels: unknown[] };
  assert.equal(v.sha256, s);
  assert.equal(v.source, 'agent-x');
  assert.deepEqual(v.labels, []);
  assert.ok(Date.parse(v.created_at) > 0);
  assert.match(r.content[0].text, /recorded .* via agent-x/);

  const unknown = await call('get_verdict', { sha256: '0'.repeat(64) });
  assert.equal(unknown.isError, true);
  assert.match(unknown.content[0].text, /^unknown sha256 0{64}/);
  const bad = await call('get_verdict', { sha256: 'xyz' });
  assert.equal(bad.isError, true);
  assert.match(bad.content[0].text, /'xyz' is not a sha256/);
});

test('list_flagged: review/block verdicts, newest first, filtered by decision, limit and since', async () => {
  // What the engine flags is measured: the database is the oracle.
  const db = new Database(path.join(prep.dataDir, 'parallax.db'), { readonly: true });
  const flagged = db.prepare("SELECT v.id, v.decision FROM verdicts v WHERE decision IN ('review','block') ORDER BY v.id DESC").all() as {
    id: number;
    decision: string;
  }[];
  db.close();
  const all = await call('list_flagged', {});
  const out = all.structuredContent as { count: number; verdicts: Verdict[] };
  assert.equal(out.count, flagged.length);
  assert.deepEqual(out.verdicts.map((v) => v.verdict_id), flagged.map((f) => f.id));
  if (flagged.length === 0) assert.equal(all.content[0].text, 'no flagged verdicts');

  for (const decision of ['review', 'block'] as const) {
    const r = await call('list_flagged', { decision });
    const o = r.structuredContent as { verdicts: Verdict[] };
    assert.deepEqual(o.verdicts.map((v) => v.verdict_id), flagged.filter((f) => f.decision === decision).map((f) => f.id));
  }
  const one = await call('list_flagged', { limit: 1 });
  assert.equal((one.structuredContent as { count: number }).count, Math.min(1, flagged.length));
  const future = await call('list_flagged', { since: '2999-01-01T00:00:00Z' });
  assert.equal((future.structuredContent as { count: number }).count, 0);
  const bad = await call('list_flagged', { since: 'last tuesday' });
  assert.equal(bad.isError, true);
  assert.match(bad.content[0].text, /since 'last tuesday' is not a date/);
  const badLimit = await call('list_flagged', { limit: 0 });
  assert.equal(badLimit.isError, true);
});

test('every scan through the server is recorded with its source', () => {
  const db = new Database(path.join(prep.dataDir, 'parallax.db'), { readonly: true });
  const rows = db.prepare('SELECT source, COUNT(*) AS n FROM verdicts GROUP BY source ORDER BY source').all() as { source: string; n: number }[];
  db.close();
  assert.deepEqual(rows, [
    { source: 'agent-x', n: 3 },
    { source: 'mcp', n: 1 },
  ]);
});

test('--http: the same tools over Streamable HTTP on loopback; foreign Host headers are refused', async () => {
  const proc = spawn(process.execPath, [...nodeArgs(), mcpEntry, 'serve', '--http', '--port', '0', '--data-dir', prep.dataDir], {
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('close', (code) => r(code)));
  try {
    const deadline = Date.now() + 15_000;
    let url: string | undefined;
    while (!(url = /listening on (http:\/\/\S+)/.exec(err)?.[1])) {
      if (Date.now() > deadline) throw new Error(`the HTTP server did not start:\n${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    const client = new Client({ name: 'http-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(url)));
    const r = (await client.callTool({ name: 'scan_media', arguments: { path: prep.media.clean, source: 'http-test' } })) as Result;
    assert.equal((r.structuredContent as unknown as Verdict).sha256, sha(prep.media.clean));
    await client.close();
    // fetch() will not send a forged Host header; node:http will, as a rebinding page's browser would.
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(url!, {
        method: 'POST',
        headers: { host: 'evil.example', 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }));
    });
    assert.equal(status, 403);
  } finally {
    proc.kill('SIGTERM');
  }
  assert.equal(await exited, 0, err);
});
