// The triage queue, an item's full record, labels and triage state, straight from the store.
// Every write that audits runs in an IMMEDIATE transaction: the hash chain reads the last row
// and appends after it, and a training child process may append at the same time.
import type Database from 'better-sqlite3';
import { ApiError, type ParsedReq, type Res } from '../../../shared/api/contract.js';
import type { QueueItem } from '../../../shared/api/schemas.js';
import type { Decision, LabelValue } from '../../../shared/types.js';
import type { Store } from '../store/store.js';

type TriageState = 'new' | 'triaged' | 'closed';

/** Latest verdict per item: the queue shows where each item stands now. */
const LATEST = `SELECT v.* FROM verdicts v JOIN (SELECT item_id, MAX(id) AS id FROM verdicts GROUP BY item_id) m ON m.id = v.id`;
const LATEST_LABEL = `(SELECT lb.label FROM labels lb WHERE lb.item_id = i.id ORDER BY lb.id DESC LIMIT 1)`;
/** Where an item came from: the source of its first verdict (re-scores keep it). */
const FIRST_SOURCE = `(SELECT v0.source FROM verdicts v0 WHERE v0.item_id = i.id ORDER BY v0.id LIMIT 1)`;

interface QueueRow {
  item_id: number;
  sha256: string;
  mime: string;
  width: number | null;
  height: number | null;
  first_path: string | null;
  first_seen_at: string;
  decision: Decision;
  risk: number;
  p_value: number;
  signals: string;
  source: string;
  path: string | null;
  scanned_at: string;
  ds_version: number | null;
  state: TriageState;
  disposition: QueueItem['disposition'];
  label: LabelValue | null;
}

export function immediate<T>(db: Database.Database, fn: () => T): T {
  return db.transaction(fn).immediate();
}

export function queue(store: Store, req: ParsedReq<'queue'>): Res<'queue'> {
  const db = store.db;
  const base = `FROM (${LATEST}) l JOIN items i ON i.id = l.item_id LEFT JOIN triage t ON t.item_id = i.id
                LEFT JOIN detector_sets ds ON ds.id = l.detector_set_id`;
  const facet = (skip: 'state' | 'decision' | null) => {
    const where: string[] = [];
    const args: unknown[] = [];
    if (req.decision?.length && skip !== 'decision') {
      where.push(`l.decision IN (${req.decision.map(() => '?').join(',')})`);
      args.push(...req.decision);
    }
    if (req.state?.length && skip !== 'state') {
      where.push(`COALESCE(t.state, 'new') IN (${req.state.map(() => '?').join(',')})`);
      args.push(...req.state);
    }
    if (req.source?.length) {
      where.push(`${FIRST_SOURCE} IN (${req.source.map(() => '?').join(',')})`);
      args.push(...req.source);
    }
    if (req.label?.length) {
      const parts: string[] = [];
      const named = req.label.filter((x) => x !== 'none');
      if (named.length) {
        parts.push(`${LATEST_LABEL} IN (${named.map(() => '?').join(',')})`);
        args.push(...named);
      }
      if (req.label.includes('none')) parts.push(`${LATEST_LABEL} IS NULL`);
      where.push(`(${parts.join(' OR ')})`);
    }
    if (req.since) {
      where.push('l.created_at >= ?');
      args.push(req.since);
    }
    if (req.until) {
      where.push('l.created_at < ?');
      args.push(req.until);
    }
    return { sql: where.length ? `WHERE ${where.join(' AND ')}` : '', args };
  };
  const f = facet(null);
  const total = (db.prepare(`SELECT COUNT(*) AS n ${base} ${f.sql}`).get(...f.args) as { n: number }).n;
  const dir = req.order === 'asc' ? 'ASC' : 'DESC';
  const orderBy = req.sort === 'time' ? `l.id ${dir}` : `l.risk ${dir}, l.id DESC`;
  const rows = db
    .prepare(
      `SELECT i.id AS item_id, i.sha256, i.mime, i.width, i.height, i.first_path, i.first_seen_at,
              l.decision, l.risk, l.p_value, l.signals, ${FIRST_SOURCE} AS source, l.path, l.created_at AS scanned_at,
              ds.version AS ds_version, COALESCE(t.state, 'new') AS state, t.disposition, ${LATEST_LABEL} AS label
         ${base} ${f.sql} ORDER BY ${orderBy} LIMIT ? OFFSET ?`,
    )
    .all(...f.args, req.limit, req.offset) as QueueRow[];

  const fs = facet('state');
  const stateCounts = { new: 0, triaged: 0, closed: 0 };
  for (const r of db.prepare(`SELECT COALESCE(t.state,'new') AS s, COUNT(*) AS n ${base} ${fs.sql} GROUP BY s`).all(...fs.args) as { s: TriageState; n: number }[]) {
    stateCounts[r.s] = r.n;
  }
  const fd = facet('decision');
  const decisionCounts = { allow: 0, review: 0, block: 0 };
  for (const r of db.prepare(`SELECT l.decision AS d, COUNT(*) AS n ${base} ${fd.sql} GROUP BY d`).all(...fd.args) as { d: Decision; n: number }[]) {
    decisionCounts[r.d] = r.n;
  }
  const sources = (
    db.prepare(`SELECT DISTINCT source FROM verdicts WHERE source <> 'rescan' ORDER BY source`).all() as { source: string }[]
  ).map((r) => r.source);
  return {
    items: rows.map(toQueueItem),
    total,
    offset: req.offset,
    limit: req.limit,
    counts: { state: stateCounts, decision: decisionCounts },
    sources,
  };
}

function toQueueItem(r: QueueRow): QueueItem {
  const signals = parseSignals(r.signals);
  return {
    sha256: r.sha256,
    item_id: r.item_id,
    decision: r.decision,
    risk: clamp01(r.risk),
    p: clamp01(r.p_value),
    top_signals: signals
      .filter((s) => s.share > 0)
      .slice(0, 3)
      .map((s) => ({ name: s.name, share: s.share, risk: s.risk })),
    source: r.source,
    path: r.path ?? r.first_path,
    mime: r.mime,
    width: r.width,
    height: r.height,
    first_seen_at: r.first_seen_at,
    scanned_at: r.scanned_at,
    detector_set_version: r.ds_version,
    state: r.state,
    disposition: r.disposition,
    label: r.label,
  };
}

export interface ParsedSignal {
  name: string;
  raw: number;
  risk: number;
  p: number;
  weight: number;
  share: number;
}

/** A verdict's signals, largest share first. Unknown extra fields (newer signals) are kept out. */
export function parseSignals(json: string): ParsedSignal[] {
  let obj: Record<string, Partial<ParsedSignal>>;
  try {
    obj = JSON.parse(json) as Record<string, Partial<ParsedSignal>>;
  } catch {
    return [];
  }
  const out: ParsedSignal[] = [];
  for (const [name, s] of Object.entries(obj ?? {})) {
    if (!s || typeof s !== 'object') continue;
    out.push({
      name,
      raw: finiteOr(s.raw, 0),
      risk: clamp01(finiteOr(s.risk, 0)),
      p: clamp01(finiteOr(s.p, 1)),
      weight: Math.max(0, finiteOr(s.weight, 0)),
      share: clamp01(finiteOr(s.share, 0)),
    });
  }
  return out.sort((a, b) => b.share - a.share || b.risk - a.risk);
}

function finiteOr(x: unknown, fallback: number): number {
  return typeof x === 'number' && Number.isFinite(x) ? x : fallback;
}

export function clamp01(x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : x;
}

// ---- item detail --------------------------------------------------------------------------------

export function itemDetail(
  store: Store,
  sha256: string,
  media: { retained: boolean; reason: string | null },
): Res<'item'> {
  const db = store.db;
  const item = store.itemBySha(sha256);
  if (!item) throw new ApiError('not_found', `no item with sha256 ${sha256}`);
  const verdictRows = db
    .prepare(
      `SELECT v.*, ds.version AS ds_version, ds.active AS ds_active, ds.config AS ds_config
         FROM verdicts v LEFT JOIN detector_sets ds ON ds.id = v.detector_set_id
        WHERE v.item_id = ? ORDER BY v.id DESC LIMIT 50`,
    )
    .all(item.id) as (Record<string, unknown> & {
    id: number; decision: Decision; risk: number; p_value: number; created_at: string; detector_set_id: number;
    encoder_id: string; provider: string; engine_version: string; source: string; duration_ms: number | null;
    signals: string; neighbours: string; ds_version: number | null; ds_active: number | null; ds_config: string | null;
  })[];
  const latest = verdictRows[0];
  let verdict: Res<'item'>['verdict'] = null;
  let neighbours: Res<'item'>['neighbours'] = [];
  if (latest) {
    verdict = {
      id: latest.id,
      decision: latest.decision,
      risk: clamp01(latest.risk),
      p: clamp01(latest.p_value),
      created_at: latest.created_at,
      detector_set: { id: latest.detector_set_id, version: latest.ds_version ?? 0, active: latest.ds_active === 1 },
      encoder_id: latest.encoder_id,
      provider: latest.provider,
      engine_version: latest.engine_version,
      source: latest.source,
      duration_ms: latest.duration_ms,
      signals: parseSignals(latest.signals),
      thresholds: thresholdsOf(latest.ds_config),
    };
    try {
      const list = JSON.parse(latest.neighbours) as { itemId: number; sha256: string; path: string | null; distance: number }[];
      neighbours = list
        .filter((n) => /^[0-9a-f]{64}$/.test(n.sha256))
        .map((n) => ({ sha256: n.sha256, item_id: n.itemId, path: n.path, distance: n.distance }));
    } catch {
      neighbours = [];
    }
  }
  const triage = db.prepare('SELECT * FROM triage WHERE item_id = ?').get(item.id) as
    | { state: TriageState; disposition: QueueItem['disposition']; reason: string | null; updated_at: string; updated_by: string | null }
    | undefined;
  const labels = db
    .prepare('SELECT id, label, reason, analyst, created_at FROM labels WHERE item_id = ? ORDER BY id DESC')
    .all(item.id) as Res<'item'>['labels'];
  const audit = (
    db.prepare(`SELECT id, at, actor, action, subject, details FROM audit_log WHERE subject = ? ORDER BY id DESC LIMIT 200`).all(`item:${item.id}`) as {
      id: number; at: string; actor: string; action: string; subject: string | null; details: string;
    }[]
  ).map((a) => ({ ...a, details: safeParse(a.details) }));
  const sightings = db
    .prepare('SELECT path, source, seen_at FROM sightings WHERE item_id = ? ORDER BY id DESC LIMIT 100')
    .all(item.id) as Res<'item'>['sightings'];
  const features = db
    .prepare('SELECT name, value, encoder_id FROM item_features WHERE item_id = ? ORDER BY name')
    .all(item.id) as Res<'item'>['features'];
  const baselines = (
    db.prepare('SELECT b.name FROM baseline_items bi JOIN baselines b ON b.id = bi.baseline_id WHERE bi.item_id = ? ORDER BY b.name').all(item.id) as {
      name: string;
    }[]
  ).map((r) => r.name);
  return {
    item: {
      id: item.id,
      sha256: item.sha256,
      modality: item.modality,
      mime: item.mime,
      width: item.width,
      height: item.height,
      bytes: item.bytes,
      first_path: item.first_path,
      first_seen_at: item.first_seen_at,
    },
    media,
    verdict,
    verdict_history: verdictRows.map((v) => ({
      id: v.id,
      decision: v.decision,
      risk: clamp01(v.risk),
      created_at: v.created_at,
      detector_set_version: v.ds_version,
      source: v.source,
    })),
    neighbours,
    sightings,
    features,
    triage: triage
      ? { state: triage.state, disposition: triage.disposition, reason: triage.reason, updated_at: triage.updated_at, updated_by: triage.updated_by }
      : { state: 'new', disposition: null, reason: null, updated_at: null, updated_by: null },
    labels,
    audit,
    baselines,
  };
}

export function thresholdsOf(configJson: string | null): { review: number; block: number } | null {
  if (!configJson) return null;
  try {
    const t = (JSON.parse(configJson) as { thresholds?: { review?: unknown; block?: unknown } }).thresholds;
    if (t && typeof t.review === 'number' && typeof t.block === 'number') return { review: t.review, block: t.block };
  } catch {
    // Not a config this version understands.
  }
  return null;
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

// ---- labels and triage --------------------------------------------------------------------------

function itemsBySha(store: Store, sha256s: readonly string[]): { id: number; sha256: string }[] {
  const unique = [...new Set(sha256s)];
  const out: { id: number; sha256: string }[] = [];
  const missing: string[] = [];
  for (const sha of unique) {
    const item = store.itemBySha(sha);
    if (item) out.push({ id: item.id, sha256: sha });
    else missing.push(sha);
  }
  if (missing.length) {
    throw new ApiError('not_found', `no item with sha256 ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ` (+${missing.length - 3} more)` : ''}`);
  }
  return out;
}

function triageStateOf(db: Database.Database, itemId: number): TriageState {
  const row = db.prepare('SELECT state FROM triage WHERE item_id = ?').get(itemId) as { state: TriageState } | undefined;
  return row?.state ?? 'new';
}

function writeTriage(
  store: Store,
  itemId: number,
  state: TriageState,
  disposition: QueueItem['disposition'],
  reason: string | null,
  analyst: string,
): void {
  const now = new Date().toISOString();
  store.db
    .prepare(
      `INSERT INTO triage (item_id, state, disposition, reason, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT(item_id) DO UPDATE SET state = excluded.state, disposition = excluded.disposition,
         reason = excluded.reason, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
    )
    .run(itemId, state, disposition, reason, now, analyst);
  store.audit(analyst, 'triage.update', `item:${itemId}`, { state, disposition, reason });
}

/**
 * Labels items. A label is a triage action: an item still 'new' becomes 'triaged' (closing
 * stays a separate, explicit step with a disposition).
 */
export function label(
  store: Store,
  sha256s: readonly string[],
  value: LabelValue,
  reason: string | null,
  analyst: string,
): Res<'label'> {
  const items = itemsBySha(store, sha256s);
  const out: Res<'label'>['items'] = [];
  immediate(store.db, () => {
    const batch = items.length > 1 ? { bulk: items.length } : {};
    for (const it of items) {
      store.addLabel(it.id, value, analyst, reason);
      let state = triageStateOf(store.db, it.id);
      if (state === 'new') {
        writeTriage(store, it.id, 'triaged', null, null, analyst);
        state = 'triaged';
      }
      out.push({ sha256: it.sha256, label: value, state });
    }
    if (items.length > 1) store.audit(analyst, 'label.bulk', null, { ...batch, label: value, reason });
  });
  return { labelled: out.length, items: out };
}

export function setTriage(store: Store, req: ParsedReq<'triage'>, analyst: string): Res<'triage'> {
  const items = itemsBySha(store, req.sha256s);
  const reason = req.reason?.trim() ? req.reason.trim() : null;
  const disposition = req.state === 'closed' ? (req.disposition ?? null) : null;
  immediate(store.db, () => {
    for (const it of items) writeTriage(store, it.id, req.state, disposition, reason, analyst);
  });
  return { updated: items.length, items: items.map((i) => ({ sha256: i.sha256, state: req.state, disposition })) };
}

/** Counts of flagged items (latest verdict review or block) by triage state. */
export function queueCounts(store: Store): { new: number; triaged: number; closed: number } {
  const out = { new: 0, triaged: 0, closed: 0 };
  const rows = store.db
    .prepare(
      `SELECT COALESCE(t.state,'new') AS s, COUNT(*) AS n FROM (${LATEST}) l LEFT JOIN triage t ON t.item_id = l.item_id
        WHERE l.decision IN ('review','block') GROUP BY s`,
    )
    .all() as { s: TriageState; n: number }[];
  for (const r of rows) out[r.s] = r.n;
  return out;
}

/** Latest label per item, for a set of item ids (or all labelled items). */
export function latestLabels(db: Database.Database): Map<number, { label: LabelValue; analyst: string; created_at: string; reason: string | null }> {
  const rows = db
    .prepare(
      `SELECT lb.item_id, lb.label, lb.analyst, lb.created_at, lb.reason FROM labels lb
         JOIN (SELECT item_id, MAX(id) AS id FROM labels GROUP BY item_id) m ON m.id = lb.id`,
    )
    .all() as { item_id: number; label: LabelValue; analyst: string; created_at: string; reason: string | null }[];
  return new Map(rows.map((r) => [r.item_id, { label: r.label, analyst: r.analyst, created_at: r.created_at, reason: r.reason }]));
}

export { LATEST as LATEST_VERDICTS_SQL };
