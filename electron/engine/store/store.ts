// The engine's only persistence: one SQLite file (better-sqlite3, WAL) per data folder.
// All writes are synchronous and short; batches are wrapped in transactions by the caller
// through `transaction()`, so a crash leaves either a whole batch or none of it.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Decision, LabelValue, Modality, Neighbour } from '../../../shared/types.js';
import { MIGRATIONS } from './migrations.js';

export interface ItemRow {
  id: number;
  sha256: string;
  modality: Modality;
  mime: string;
  width: number | null;
  height: number | null;
  bytes: number;
  first_path: string | null;
  first_seen_at: string;
}

export interface NewItem {
  sha256: string;
  modality: Modality;
  mime: string;
  width: number | null;
  height: number | null;
  bytes: number;
  path: string | null;
}

export interface DetectorSetRow {
  id: number;
  baseline_id: number;
  version: number;
  encoder_id: string;
  created_at: string;
  n_items: number;
  config: string;
  stats: string;
  active: number;
  /** Absent only in rows built outside the store. */
  modality?: Modality;
}

export interface VerdictRecord {
  itemId: number;
  detectorSetId: number;
  encoderId: string;
  provider: string;
  engineVersion: string;
  risk: number;
  p: number;
  decision: Decision;
  signals: unknown;
  neighbours: Neighbour[];
  source: string;
  path: string | null;
  durationMs: number | null;
}

export interface VerdictRow {
  id: number;
  item_id: number;
  sha256: string;
  detector_set_id: number;
  encoder_id: string;
  provider: string;
  engine_version: string;
  risk: number;
  p_value: number;
  decision: Decision;
  signals: string;
  neighbours: string;
  source: string;
  path: string | null;
  duration_ms: number | null;
  created_at: string;
}

export interface AuditRow {
  id: number;
  at: string;
  actor: string;
  action: string;
  subject: string | null;
  details: string;
  prev_hash: string;
  hash: string;
}

const GENESIS = '0'.repeat(64);

export class Store {
  readonly db: Database.Database;

  private constructor(
    readonly file: string,
    db: Database.Database,
  ) {
    this.db = db;
  }

  static open(file: string): Store {
    if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true });
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    const store = new Store(file, db);
    store.migrate();
    return store;
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  private migrate(): void {
    const current = this.schemaVersion;
    const latest = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;
    if (current > latest) {
      throw new Error(
        `database ${this.file} has schema version ${current}, newer than this Parallax (${latest}); upgrade Parallax`,
      );
    }
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      this.db.transaction(() => {
        this.db.exec(m.sql);
        this.db.pragma(`user_version = ${m.version}`);
      })();
    }
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  // ---- baselines ---------------------------------------------------------------------------

  ensureBaseline(name: string): number {
    const found = this.db.prepare('SELECT id FROM baselines WHERE name = ?').get(name) as { id: number } | undefined;
    if (found) return found.id;
    const now = isoNow();
    const info = this.db
      .prepare('INSERT INTO baselines (name, created_at, updated_at) VALUES (?, ?, ?)')
      .run(name, now, now);
    this.audit('system', 'baseline.create', name, {});
    return Number(info.lastInsertRowid);
  }

  findBaseline(name: string): { id: number; name: string; created_at: string; updated_at: string } | undefined {
    return this.db.prepare('SELECT * FROM baselines WHERE name = ?').get(name) as
      | { id: number; name: string; created_at: string; updated_at: string }
      | undefined;
  }

  listBaselines(): { id: number; name: string; created_at: string; updated_at: string; n_items: number }[] {
    return this.db
      .prepare(
        `SELECT b.*, (SELECT COUNT(*) FROM baseline_items bi WHERE bi.baseline_id = b.id) AS n_items
           FROM baselines b ORDER BY b.name`,
      )
      .all() as { id: number; name: string; created_at: string; updated_at: string; n_items: number }[];
  }

  /** Returns true when the item was new to the baseline. */
  addToBaseline(baselineId: number, itemId: number): boolean {
    const info = this.db
      .prepare('INSERT OR IGNORE INTO baseline_items (baseline_id, item_id, added_at) VALUES (?, ?, ?)')
      .run(baselineId, itemId, isoNow());
    if (info.changes > 0) {
      this.db.prepare('UPDATE baselines SET updated_at = ? WHERE id = ?').run(isoNow(), baselineId);
      return true;
    }
    return false;
  }

  baselineSize(baselineId: number): number {
    return (
      this.db.prepare('SELECT COUNT(*) AS n FROM baseline_items WHERE baseline_id = ?').get(baselineId) as {
        n: number;
      }
    ).n;
  }

  /**
   * Baseline items with their embedding for one encoder, ordered by sha256: content order, not
   * insertion order (item ids follow decode completion in concurrent batches), so training on
   * the same baseline is reproducible however its items arrived.
   */
  baselineEmbeddings(
    baselineId: number,
    encoderId: string,
    /** Only items of this modality (default: all). */
    modality?: Modality,
  ): { itemId: number; sha256: string; path: string | null; vector: Float32Array | null }[] {
    const rows = this.db
      .prepare(
        `SELECT i.id AS itemId, i.sha256, i.first_path AS path, e.vector
           FROM baseline_items bi
           JOIN items i ON i.id = bi.item_id
      LEFT JOIN embeddings e ON e.item_id = i.id AND e.encoder_id = ?
          WHERE bi.baseline_id = ? AND (? IS NULL OR i.modality = ?)
       ORDER BY i.sha256`,
      )
      .all(encoderId, baselineId, modality ?? null, modality ?? null) as { itemId: number; sha256: string; path: string | null; vector: Buffer | null }[];
    return rows.map((r) => ({ ...r, vector: r.vector ? blobToVector(r.vector) : null }));
  }

  /** How many baseline items of each modality the baseline holds. */
  baselineModalityCounts(baselineId: number): Record<Modality, number> {
    const rows = this.db
      .prepare(
        `SELECT i.modality AS modality, COUNT(*) AS n FROM baseline_items bi JOIN items i ON i.id = bi.item_id
          WHERE bi.baseline_id = ? GROUP BY i.modality`,
      )
      .all(baselineId) as { modality: Modality; n: number }[];
    const out: Record<Modality, number> = { image: 0, audio: 0, video: 0 };
    for (const r of rows) out[r.modality] = r.n;
    return out;
  }

  // ---- items and embeddings ------------------------------------------------------------------

  upsertItem(item: NewItem, source: string): ItemRow {
    const now = isoNow();
    this.db
      .prepare(
        `INSERT INTO items (sha256, modality, mime, width, height, bytes, first_path, first_seen_at)
         VALUES (@sha256, @modality, @mime, @width, @height, @bytes, @path, @now)
         ON CONFLICT(sha256) DO NOTHING`,
      )
      .run({ ...item, now });
    const row = this.itemBySha(item.sha256)!;
    this.db
      .prepare('INSERT INTO sightings (item_id, path, source, seen_at) VALUES (?, ?, ?, ?)')
      .run(row.id, item.path, source, now);
    return row;
  }

  itemBySha(sha256: string): ItemRow | undefined {
    return this.db.prepare('SELECT * FROM items WHERE sha256 = ?').get(sha256) as ItemRow | undefined;
  }

  itemById(id: number): ItemRow | undefined {
    return this.db.prepare('SELECT * FROM items WHERE id = ?').get(id) as ItemRow | undefined;
  }

  /** A cached embedding, or undefined. `maxAgeSeconds` 0 means no expiry. */
  cachedEmbedding(itemId: number, encoderId: string, maxAgeSeconds = 0): Float32Array | undefined {
    const row = this.db
      .prepare('SELECT vector, created_at FROM embeddings WHERE item_id = ? AND encoder_id = ?')
      .get(itemId, encoderId) as { vector: Buffer; created_at: string } | undefined;
    if (!row) return undefined;
    if (maxAgeSeconds > 0 && Date.now() - Date.parse(row.created_at) > maxAgeSeconds * 1000) return undefined;
    return blobToVector(row.vector);
  }

  putEmbedding(itemId: number, encoderId: string, vector: Float32Array): void {
    this.db
      .prepare(
        `INSERT INTO embeddings (item_id, encoder_id, dim, vector, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(item_id, encoder_id) DO UPDATE SET vector = excluded.vector, created_at = excluded.created_at`,
      )
      .run(itemId, encoderId, vector.length, vectorToBlob(vector), isoNow());
  }

  // ---- detector sets --------------------------------------------------------------------------

  saveDetectorSet(input: {
    baselineId: number;
    encoderId: string;
    nItems: number;
    config: unknown;
    stats: unknown;
    state: Buffer;
    activate: boolean;
    /** Which items the set judges (default 'image'); one set per modality is active. */
    modality?: Modality;
  }): DetectorSetRow {
    return this.transaction(() => {
      const last = this.db
        .prepare('SELECT COALESCE(MAX(version), 0) AS v FROM detector_sets WHERE baseline_id = ?')
        .get(input.baselineId) as { v: number };
      const version = last.v + 1;
      const info = this.db
        .prepare(
          `INSERT INTO detector_sets (baseline_id, version, encoder_id, created_at, n_items, config, stats, state, active, modality)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)`,
        )
        .run(
          input.baselineId,
          version,
          input.encoderId,
          isoNow(),
          input.nItems,
          JSON.stringify(input.config),
          JSON.stringify(input.stats),
          input.state,
          input.modality ?? 'image',
        );
      const id = Number(info.lastInsertRowid);
      if (input.activate) this.activateDetectorSet(id);
      this.audit('system', 'detector_set.create', `detector_set:${id}`, { version, n_items: input.nItems });
      return this.detectorSet(id)!;
    });
  }

  activateDetectorSet(id: number): void {
    const row = this.detectorSet(id);
    if (!row) throw new Error(`detector set ${id} does not exist`);
    this.transaction(() => {
      this.db.prepare('UPDATE detector_sets SET active = 0 WHERE baseline_id = ? AND modality = ?').run(row.baseline_id, row.modality ?? 'image');
      this.db.prepare('UPDATE detector_sets SET active = 1 WHERE id = ?').run(id);
      this.audit('system', 'detector_set.activate', `detector_set:${id}`, { version: row.version });
    });
  }

  detectorSet(id: number): DetectorSetRow | undefined {
    return this.db
      .prepare('SELECT id, baseline_id, version, encoder_id, created_at, n_items, config, stats, active, modality FROM detector_sets WHERE id = ?')
      .get(id) as DetectorSetRow | undefined;
  }

  activeDetectorSet(baselineId: number, modality: Modality = 'image'): DetectorSetRow | undefined {
    return this.db
      .prepare(
        'SELECT id, baseline_id, version, encoder_id, created_at, n_items, config, stats, active, modality FROM detector_sets WHERE baseline_id = ? AND active = 1 AND modality = ?',
      )
      .get(baselineId, modality) as DetectorSetRow | undefined;
  }

  detectorSetState(id: number): Buffer {
    const row = this.db.prepare('SELECT state FROM detector_sets WHERE id = ?').get(id) as { state: Buffer } | undefined;
    if (!row) throw new Error(`detector set ${id} does not exist`);
    return row.state;
  }

  listDetectorSets(baselineId: number): DetectorSetRow[] {
    return this.db
      .prepare(
        'SELECT id, baseline_id, version, encoder_id, created_at, n_items, config, stats, active, modality FROM detector_sets WHERE baseline_id = ? ORDER BY version',
      )
      .all(baselineId) as DetectorSetRow[];
  }

  // ---- verdicts and labels -----------------------------------------------------------------

  recordVerdict(v: VerdictRecord): number {
    const info = this.db
      .prepare(
        `INSERT INTO verdicts (item_id, detector_set_id, encoder_id, provider, engine_version, risk, p_value, decision,
                               signals, neighbours, source, path, duration_ms, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        v.itemId,
        v.detectorSetId,
        v.encoderId,
        v.provider,
        v.engineVersion,
        v.risk,
        v.p,
        v.decision,
        JSON.stringify(v.signals),
        JSON.stringify(v.neighbours),
        v.source,
        v.path,
        v.durationMs,
        isoNow(),
      );
    return Number(info.lastInsertRowid);
  }

  latestVerdict(sha256: string): VerdictRow | undefined {
    return this.db
      .prepare(
        `SELECT v.*, i.sha256 FROM verdicts v JOIN items i ON i.id = v.item_id
          WHERE i.sha256 = ? ORDER BY v.id DESC LIMIT 1`,
      )
      .get(sha256) as VerdictRow | undefined;
  }

  countVerdicts(): Record<Decision, number> {
    const rows = this.db.prepare('SELECT decision, COUNT(*) AS n FROM verdicts GROUP BY decision').all() as {
      decision: Decision;
      n: number;
    }[];
    const out: Record<Decision, number> = { allow: 0, review: 0, block: 0 };
    for (const r of rows) out[r.decision] = r.n;
    return out;
  }

  addLabel(itemId: number, label: LabelValue, analyst: string, reason: string | null): number {
    return this.transaction(() => {
      const info = this.db
        .prepare('INSERT INTO labels (item_id, label, reason, analyst, created_at) VALUES (?, ?, ?, ?, ?)')
        .run(itemId, label, reason, analyst, isoNow());
      this.audit(analyst, 'label.add', `item:${itemId}`, { label, reason });
      return Number(info.lastInsertRowid);
    });
  }

  // ---- audit ----------------------------------------------------------------------------------

  audit(actor: string, action: string, subject: string | null, details: unknown): void {
    const append = () => {
      const prev = this.db.prepare('SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1').get() as
        | { hash: string }
        | undefined;
      const at = isoNow();
      const detailsJson = JSON.stringify(details ?? {});
      const prevHash = prev?.hash ?? GENESIS;
      const hash = auditHash(prevHash, at, actor, action, subject, detailsJson);
      this.db
        .prepare(
          'INSERT INTO audit_log (at, actor, action, subject, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)',
        )
        .run(at, actor, action, subject, detailsJson, prevHash, hash);
    };
    // Read-then-append must not interleave with another process's append (the MCP guard and
    // the CLI share a database), or two rows would chain to the same predecessor and the log
    // would look tampered with. An IMMEDIATE transaction takes the write lock before the read.
    // Inside a caller's transaction, SQLite refuses a stale write instead (BUSY_SNAPSHOT).
    if (this.db.inTransaction) append();
    else this.db.transaction(append).immediate();
  }

  auditLog(limit = 100): AuditRow[] {
    return this.db.prepare('SELECT * FROM audit_log ORDER BY id DESC LIMIT ?').all(limit) as AuditRow[];
  }

  /** Walks the hash chain; returns the id of the first row that does not verify, or null. */
  verifyAudit(): number | null {
    let prev = GENESIS;
    for (const row of this.db.prepare('SELECT * FROM audit_log ORDER BY id').iterate() as IterableIterator<AuditRow>) {
      const expect = auditHash(prev, row.at, row.actor, row.action, row.subject, row.details);
      if (row.prev_hash !== prev || row.hash !== expect) return row.id;
      prev = row.hash;
    }
    return null;
  }
}

function auditHash(
  prev: string,
  at: string,
  actor: string,
  action: string,
  subject: string | null,
  details: string,
): string {
  return createHash('sha256')
    .update(JSON.stringify([prev, at, actor, action, subject, details]))
    .digest('hex');
}

function isoNow(): string {
  return new Date().toISOString();
}

export function vectorToBlob(v: Float32Array): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

export function blobToVector(b: Buffer): Float32Array {
  // Copy: the Buffer may sit at an offset that is not 4-byte aligned inside a shared pool.
  const out = new Float32Array(b.byteLength / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}
