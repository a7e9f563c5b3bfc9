// "Everything similar to this one": nearest items by cosine distance between cached
// embeddings, among scanned items (bulk triage of a campaign) or among baseline members.
// The index is rebuilt in slices only when the set of items has changed.
import { ApiError, type ParsedReq, type Res } from '../../../shared/api/contract.js';
import { BruteForceIndex } from '../../../shared/math/vector-index.js';
import type { Store } from '../store/store.js';
import { blobToVector } from '../store/store.js';
import { Ticker } from './cooperative.js';
import { clamp01, LATEST_VERDICTS_SQL } from './queries.js';

interface Built {
  key: string;
  index: BruteForceIndex;
  itemIds: number[];
}

export class SimilarityIndex {
  private readonly built = new Map<string, Built>();
  private building = new Map<string, Promise<Built>>();

  constructor(private readonly store: Store) {}

  private signature(scope: 'scanned' | 'baseline', encoderId: string): string {
    const db = this.store.db;
    if (scope === 'scanned') {
      const r = db.prepare('SELECT COUNT(*) AS n, COALESCE(MAX(id),0) AS m FROM verdicts').get() as { n: number; m: number };
      const e = db.prepare('SELECT COUNT(*) AS n FROM embeddings WHERE encoder_id = ?').get(encoderId) as { n: number };
      return `scanned:${encoderId}:${r.n}:${r.m}:${e.n}`;
    }
    const r = db.prepare('SELECT COUNT(*) AS n, COALESCE(MAX(added_at),\'\') AS m FROM baseline_items').get() as { n: number; m: string };
    return `baseline:${encoderId}:${r.n}:${r.m}`;
  }

  private async build(scope: 'scanned' | 'baseline', encoderId: string): Promise<Built> {
    const key = this.signature(scope, encoderId);
    const have = this.built.get(scope);
    if (have?.key === key) return have;
    const pending = this.building.get(key);
    if (pending) return pending;
    const p = (async () => {
      const sql =
        scope === 'scanned'
          ? `SELECT e.item_id AS id, e.vector FROM embeddings e WHERE e.encoder_id = ? AND e.item_id IN (SELECT DISTINCT item_id FROM verdicts) ORDER BY e.item_id`
          : `SELECT e.item_id AS id, e.vector FROM embeddings e WHERE e.encoder_id = ? AND e.item_id IN (SELECT item_id FROM baseline_items) ORDER BY e.item_id`;
      const ticker = new Ticker(10);
      let index: BruteForceIndex | null = null;
      const itemIds: number[] = [];
      for (const row of this.store.db.prepare(sql).iterate(encoderId) as IterableIterator<{ id: number; vector: Buffer }>) {
        const v = blobToVector(row.vector);
        index ??= new BruteForceIndex(v.length, 1024);
        index.add(v);
        itemIds.push(row.id);
        if (itemIds.length % 256 === 0) await ticker.tick();
      }
      const built: Built = { key, index: index ?? new BruteForceIndex(1, 1), itemIds };
      this.built.set(scope, built);
      return built;
    })().finally(() => this.building.delete(key));
    this.building.set(key, p);
    return p;
  }

  async similar(req: ParsedReq<'similar'>, encoderId: string): Promise<Res<'similar'>> {
    const item = this.store.itemBySha(req.sha256);
    if (!item) throw new ApiError('not_found', `no item with sha256 ${req.sha256}`);
    const row = this.store.db.prepare('SELECT vector FROM embeddings WHERE item_id = ? AND encoder_id = ?').get(item.id, encoderId) as
      | { vector: Buffer }
      | undefined;
    if (!row) {
      throw new ApiError('not_found', `item ${req.sha256.slice(0, 12)} has no embedding for encoder ${encoderId}: scan it again`);
    }
    const q = blobToVector(row.vector);
    const built = await this.build(req.scope, encoderId);
    if (built.itemIds.length === 0 || built.index.dim !== q.length) return { encoder_id: encoderId, items: [] };
    const self = built.itemIds.indexOf(item.id);
    const hits = built.index.search(q, Math.min(req.k, built.itemIds.length), self >= 0 ? self : undefined);
    const details = this.store.db.prepare(
      `SELECT i.sha256, i.first_path AS path, l.decision, l.risk, t.state,
              (SELECT lb.label FROM labels lb WHERE lb.item_id = i.id ORDER BY lb.id DESC LIMIT 1) AS label
         FROM items i LEFT JOIN (${LATEST_VERDICTS_SQL}) l ON l.item_id = i.id LEFT JOIN triage t ON t.item_id = i.id
        WHERE i.id = ?`,
    );
    const items: Res<'similar'>['items'] = [];
    for (const h of hits) {
      if (req.max_distance !== undefined && h.distance > req.max_distance) break;
      const d = details.get(built.itemIds[h.index]) as {
        sha256: string; path: string | null; decision: 'allow' | 'review' | 'block' | null; risk: number | null; state: 'new' | 'triaged' | 'closed' | null; label: 'benign' | 'malicious' | null;
      };
      items.push({
        sha256: d.sha256,
        distance: Math.round(h.distance * 1e6) / 1e6,
        decision: d.decision,
        risk: d.risk === null ? null : clamp01(d.risk),
        state: d.decision ? (d.state ?? 'new') : null,
        label: d.label,
        path: d.path,
      });
    }
    return { encoder_id: encoderId, items };
  }
}
