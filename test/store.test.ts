import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { MIGRATIONS } from '../electron/engine/store/migrations.js';
import { Store } from '../electron/engine/store/store.js';

function tempDb(): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-store-')), 'parallax.db');
}

test('migrations run once, set user_version, and reopening is a no-op', () => {
  const file = tempDb();
  const a = Store.open(file);
  assert.equal(a.schemaVersion, MIGRATIONS[MIGRATIONS.length - 1].version);
  assert.equal(a.db.pragma('journal_mode', { simple: true }), 'wal');
  a.ensureBaseline('default');
  a.close();
  const b = Store.open(file);
  assert.equal(b.listBaselines().length, 1);
  b.close();
});

test('a database from a newer Parallax is refused with a clear error', () => {
  const file = tempDb();
  Store.open(file).close();
  const s = Store.open(file);
  s.db.pragma('user_version = 999');
  s.close();
  assert.throws(() => Store.open(file), /schema version 999, newer than this Parallax/);
});

test('embeddings round-trip exactly and are keyed by item and encoder id', () => {
  const s = Store.open(tempDb());
  const item = s.upsertItem(
    { sha256: 'a'.repeat(64), modality: 'image', mime: 'image/png', width: 2, height: 2, bytes: 10, path: '/x.png' },
    'test',
  );
  const v = Float32Array.from([0.1, -2.5, 3e-8, 1]);
  s.putEmbedding(item.id, 'enc@1', v);
  assert.deepEqual(s.cachedEmbedding(item.id, 'enc@1'), v);
  assert.equal(s.cachedEmbedding(item.id, 'enc@2'), undefined);
  // the same bytes seen again are the same item, with a second sighting
  const again = s.upsertItem({ ...item, path: '/y.png' }, 'test');
  assert.equal(again.id, item.id);
  const sightings = s.db.prepare('SELECT COUNT(*) AS n FROM sightings WHERE item_id = ?').get(item.id) as { n: number };
  assert.equal(sightings.n, 2);
  s.close();
});

test('the audit log is append-only and its hash chain exposes tampering', () => {
  const s = Store.open(tempDb());
  s.ensureBaseline('one');
  s.audit('alice', 'label.add', 'item:1', { label: 'benign' });
  s.audit('bob', 'label.add', 'item:2', { label: 'malicious' });
  assert.equal(s.verifyAudit(), null);
  assert.throws(() => s.db.prepare("UPDATE audit_log SET actor = 'mallory'").run(), /append-only/);
  assert.throws(() => s.db.prepare('DELETE FROM audit_log').run(), /append-only/);
  // Someone with raw file access drops the trigger and rewrites history: the chain shows it.
  s.db.exec('DROP TRIGGER audit_log_no_update');
  s.db.prepare("UPDATE audit_log SET details = '{\"label\":\"benign\"}' WHERE actor = 'bob'").run();
  const broken = s.verifyAudit();
  const bobRow = s.db.prepare("SELECT id FROM audit_log WHERE actor = 'bob'").get() as { id: number };
  assert.equal(broken, bobRow.id);
  s.close();
});

test('detector sets are versioned per baseline and exactly one is active', () => {
  const s = Store.open(tempDb());
  const b = s.ensureBaseline('default');
  const mk = () =>
    s.saveDetectorSet({ baselineId: b, encoderId: 'enc@1', nItems: 3, config: {}, stats: {}, state: Buffer.from('x'), activate: true });
  const v1 = mk();
  const v2 = mk();
  assert.equal(v1.version, 1);
  assert.equal(v2.version, 2);
  assert.equal(s.activeDetectorSet(b)?.id, v2.id);
  s.activateDetectorSet(v1.id); // roll back
  assert.equal(s.activeDetectorSet(b)?.id, v1.id);
  assert.equal(s.listDetectorSets(b).filter((r) => r.active).length, 1);
  assert.throws(() => s.activateDetectorSet(999), /does not exist/);
  s.close();
});

test('verdict decisions are constrained by the schema', () => {
  const s = Store.open(tempDb());
  const b = s.ensureBaseline('default');
  const set = s.saveDetectorSet({ baselineId: b, encoderId: 'e', nItems: 1, config: {}, stats: {}, state: Buffer.from('x'), activate: true });
  const item = s.upsertItem({ sha256: 'b'.repeat(64), modality: 'image', mime: 'image/jpeg', width: 1, height: 1, bytes: 1, path: null }, 't');
  const base = {
    itemId: item.id, detectorSetId: set.id, encoderId: 'e', provider: 'cpu', engineVersion: '0', risk: 0.1, p: 0.5,
    signals: {}, neighbours: [], source: 't', path: null, durationMs: 1,
  };
  s.recordVerdict({ ...base, decision: 'allow' });
  assert.throws(() => s.recordVerdict({ ...base, decision: 'maybe' as 'allow' }), /CHECK constraint/);
  assert.equal(s.latestVerdict(item.sha256)?.decision, 'allow');
  assert.deepEqual(s.countVerdicts(), { allow: 1, review: 0, block: 0 });
  s.close();
});

test('two processes appending to the audit log concurrently keep one unbroken chain', async () => {
  const file = tempDb();
  Store.open(file).close();
  const { spawn } = await import('node:child_process');
  const storeModule = new URL('../electron/engine/store/store.js', import.meta.url).href;
  const script = `const { Store } = await import(${JSON.stringify(storeModule)});
    const s = Store.open(${JSON.stringify(file)});
    for (let i = 0; i < 300; i++) s.audit(process.argv[1], 'test.append', null, { i });
    s.close();`;
  const run = (who: string) =>
    new Promise<number>((resolve, reject) => {
      const child = spawn(process.execPath, [...process.execArgv, '--input-type=module', '-e', script, who], { stdio: 'inherit' });
      child.on('error', reject);
      child.on('close', (code) => resolve(code ?? -1));
    });
  assert.deepEqual(await Promise.all([run('a'), run('b')]), [0, 0]);
  const s = Store.open(file);
  assert.equal((s.db.prepare("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'test.append'").get() as { n: number }).n, 600);
  assert.equal(s.verifyAudit(), null);
  s.close();
});
