// The `parallax` command end to end: real files, real ONNX session, real SQLite, a real
// child process per command, exactly as a user runs it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { before, test } from 'node:test';
import Database from 'better-sqlite3';
import { defaultConfigYaml } from '../shared/config.js';
import { DETECTION_SIGNALS } from '../shared/detectors/signals.js';
import { runCli } from './helpers/cli.js';
import { repoRoot } from './helpers/repo-root.js';
import { makeBrokenFolder } from './fixtures/make-fixtures.js';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-cli-'));
const demo = path.join(repoRoot(), 'models', 'demo');
const dd = ['--data-dir', dataDir, '--quiet'];

before(async () => {
  const add = await runCli(['baseline', 'add', path.join(demo, 'baseline'), ...dd]);
  assert.equal(add.code, 0, add.stderr);
  assert.match(add.stdout, /50 added, 0 already present, 50 items in total/);
  const train = await runCli(['train', ...dd]);
  assert.equal(train.code, 0, train.stderr);
  assert.match(train.stdout, /trained detector set v1 on 50 items/);
  assert.match(train.stderr, /a baseline of 50 items calibrates coarsely/, 'a small baseline is said to be small');
});

test('scan --json: one document with items (signals, neighbours) and errors', async () => {
  const broken = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-broken-'));
  const fixtures = await makeBrokenFolder(broken);
  const res = await runCli(['scan', '--json', path.join(demo, 'holdout'), broken, ...dd]);
  const report = JSON.parse(res.stdout) as {
    items: { path: string; sha256: string; modality: string; decision: string; risk: number; signals: Record<string, { raw: number; risk: number; weight: number }>; neighbours: { sha256: string; distance: number }[] }[];
    errors: { path: string; reason: string }[];
    summary: { allow: number; review: number; block: number; errors: number };
    engine: { provider: string; encoder_id: string };
  };
  const expectedErrors = fixtures.filter((f) => f.expect !== 'ok');
  const expectedOk = fixtures.filter((f) => f.expect === 'ok');
  assert.equal(report.errors.length, expectedErrors.length, JSON.stringify(report.errors, null, 1));
  for (const f of expectedErrors) {
    const e = report.errors.find((x) => path.basename(x.path) === f.name);
    assert.ok(e, `no error entry for ${f.name}`);
    assert.ok(e.reason.length > 5, `reason for ${f.name} says why`);
  }
  assert.equal(report.items.length, 5 + expectedOk.length);
  for (const item of report.items) {
    assert.match(item.sha256, /^[0-9a-f]{64}$/);
    assert.equal(item.modality, 'image');
    assert.ok(['allow', 'review', 'block'].includes(item.decision));
    assert.ok(item.risk >= 0 && item.risk <= 1);
    assert.deepEqual(Object.keys(item.signals).sort(), [...DETECTION_SIGNALS].sort());
    for (const s of Object.values(item.signals)) {
      assert.ok(Number.isFinite(s.raw) && s.risk >= 0 && s.risk <= 1 && s.weight >= 0);
    }
    assert.equal(item.neighbours.length, 5);
  }
  assert.equal(report.engine.provider, 'cpu');
  const flagged = report.summary.block > 0 ? 20 : report.summary.review > 0 ? 10 : 3;
  assert.equal(res.code, flagged, 'exit code follows the documented precedence');
});

test('a baseline item scanned again is its own nearest neighbour and reuses the cached embedding', async () => {
  const file = path.join(demo, 'baseline', fs.readdirSync(path.join(demo, 'baseline')).sort()[0]);
  const db = new Database(path.join(dataDir, 'parallax.db'), { readonly: true });
  const before = (db.prepare('SELECT COUNT(*) AS n FROM embeddings').get() as { n: number }).n;
  const res = await runCli(['scan', '--json', file, ...dd]);
  const after = (db.prepare('SELECT COUNT(*) AS n FROM embeddings').get() as { n: number }).n;
  db.close();
  const item = JSON.parse(res.stdout).items[0];
  assert.ok(item.neighbours[0].distance < 1e-5, `distance ${item.neighbours[0].distance}`);
  assert.equal(after, before);
});

test('every verdict records the encoder, provider, detector set and engine version', async () => {
  const db = new Database(path.join(dataDir, 'parallax.db'), { readonly: true });
  const rows = db.prepare('SELECT encoder_id, provider, detector_set_id, engine_version, signals FROM verdicts').all() as {
    encoder_id: string; provider: string; detector_set_id: number; engine_version: string; signals: string;
  }[];
  db.close();
  assert.ok(rows.length > 5);
  for (const r of rows) {
    assert.match(r.encoder_id, /^mobilenet_v2@[0-9a-f]{12}$/);
    assert.equal(r.provider, 'cpu');
    assert.ok(r.detector_set_id > 0);
    assert.match(r.engine_version, /^\d+\.\d+\.\d+/);
    assert.equal(Object.keys(JSON.parse(r.signals)).length, DETECTION_SIGNALS.length);
  }
});

test('status shows the device in use and why', async () => {
  const res = await runCli(['status', '--json', ...dd]);
  assert.equal(res.code, 0, res.stderr);
  const s = JSON.parse(res.stdout);
  assert.equal(s.encoder.provider, 'cpu');
  assert.ok(s.encoder.provider_note.length > 0);
  assert.equal(s.baselines[0].items, 50);
  assert.equal(s.baselines[0].detector_set.version, 1);
  assert.equal(s.audit_chain_ok, true);
  const text = await runCli(['status', ...dd]);
  assert.match(text.stdout, /encoder\s+mobilenet_v2@\w+ \(1280-d\) on cpu/);
});

test('errors: unknown command and bad config exit 2, untrained baseline exits 1, each saying why', async () => {
  const unknown = await runCli(['frobnicate', ...dd]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command 'frobnicate'/);

  const cfg = path.join(dataDir, 'bad.yaml');
  fs.writeFileSync(cfg, 'embedding_anomaly_detection:\n  thresholds: { block: 7 }\n');
  const bad = await runCli(['status', '--config', cfg, ...dd]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /'embedding_anomaly_detection\.thresholds\.block'/);

  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-empty-'));
  const untrained = await runCli(['scan', path.join(demo, 'holdout'), '--data-dir', empty, '--quiet']);
  assert.equal(untrained.code, 1);
  assert.match(untrained.stderr, /baseline 'default' does not exist/);
});

test('train refuses a baseline below min_samples and says how many are needed', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-small-'));
  const add = await runCli(['baseline', 'add', path.join(demo, 'holdout'), '--data-dir', dir, '--quiet']);
  assert.equal(add.code, 0, add.stderr);
  const train = await runCli(['train', '--data-dir', dir, '--quiet']);
  assert.equal(train.code, 1);
  assert.match(train.stderr, /5\b.*50|50\b.*5\b/);
});

test('with the embedding cache off, baseline items are still stored (they are the training data) and scanned items are not', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-nocache-'));
  const config = path.join(dir, 'config.yaml');
  assert.match(defaultConfigYaml(), /cache_embeddings: true/);
  fs.writeFileSync(config, defaultConfigYaml().replace('cache_embeddings: true', 'cache_embeddings: false'));
  const opts = ['--data-dir', dir, '--quiet'];
  const add = await runCli(['baseline', 'add', path.join(demo, 'baseline'), ...opts]);
  assert.equal(add.code, 0, add.stderr);
  const train = await runCli(['train', ...opts]);
  assert.equal(train.code, 0, train.stderr);
  const scan = await runCli(['scan', '--json', path.join(demo, 'holdout'), ...opts]);
  assert.ok([0, 10, 20].includes(scan.code), scan.stderr);
  assert.equal(JSON.parse(scan.stdout).items.length, 5);
  const db = new Database(path.join(dir, 'parallax.db'), { readonly: true });
  const stored = (db.prepare('SELECT COUNT(DISTINCT item_id) AS n FROM embeddings').get() as { n: number }).n;
  db.close();
  assert.equal(stored, 50);
});

test('a command line of hundreds of files (a shell glob) runs: onnxruntime would crash on a ~28 KB command line', async () => {
  const missing = Array.from({ length: 700 }, (_, i) => path.join(os.tmpdir(), 'parallax-missing', 'a-rather-long-folder-name-for-a-missing-image', `image-${i}.png`));
  assert.ok(missing.join(' ').length > 40_000);
  const res = await runCli(['scan', '--json', ...missing, ...dd]);
  assert.equal(res.code, 3, res.stderr);
  const report = JSON.parse(res.stdout) as { errors: { path: string; reason: string }[] };
  assert.equal(report.errors.length, 700);
  assert.deepEqual(report.errors.map((e) => e.path).sort(), [...missing].sort());
  assert.match(report.errors[0].reason, /does not exist/);
});
