// Data for the embedding map. The browser runs UMAP (seeded, in a Web Worker); here the
// 1280-d embeddings are first reduced by PCA fitted on a deterministic baseline sample, which
// cuts what travels by 40× and is what UMAP would otherwise spend its time on. The sample is
// the baseline members with the smallest sha256 (content hashes: effectively random, and the
// same sample every day while the baseline is unchanged), so positions stay comparable.
import { createHash } from 'node:crypto';
import { ApiError, type ParsedReq, type Res } from '../../../shared/api/contract.js';
import { float32ToBase64, float64ToBase64, int32ToBase64 } from '../../../shared/math/base64.js';
import { gemmNT, orthonormaliseRows, symmetricEigen } from '../../../shared/math/matrix.js';
import { mulberry32 } from '../../../shared/math/rng.js';
import type { Decision, LabelValue } from '../../../shared/types.js';
import type { Store } from '../store/store.js';
import { blobToVector } from '../store/store.js';
import { Ticker } from './cooperative.js';
import { LATEST_VERDICTS_SQL } from './queries.js';

export const MAP_SEED = 42;

export interface PcaBasis {
  dim: number;
  k: number;
  mean: Float32Array;
  /** k×dim, rows orthonormal, descending variance. */
  components: Float32Array;
  explained: number;
}

/**
 * Top-k principal components by randomized subspace iteration (Halko et al. 2011) with
 * Rayleigh–Ritz, in row blocks so the event loop gets a turn every few milliseconds.
 */
export async function fitPca(rows: readonly Float32Array[], k: number, seed: number, signal?: AbortSignal): Promise<PcaBasis> {
  const n = rows.length;
  if (n < 2) throw new ApiError('conflict', `the map needs at least 2 baseline items with embeddings, found ${n}`);
  const d = rows[0].length;
  k = Math.max(1, Math.min(k, n - 1, d));
  const r = Math.min(d, k + 8);
  const ticker = new Ticker(10);
  const mean = new Float32Array(d);
  const acc = new Float64Array(d);
  for (const x of rows) for (let j = 0; j < d; j++) acc[j] += x[j];
  for (let j = 0; j < d; j++) mean[j] = acc[j] / n;
  const xc = new Float32Array(n * d);
  const xt = new Float32Array(d * n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const x = rows[i];
    for (let j = 0; j < d; j++) {
      const v = x[j] - mean[j];
      xc[i * d + j] = v;
      xt[j * n + i] = v;
      total += v * v;
    }
    if (i % 64 === 0) await ticker.tick(signal);
  }
  const rng = mulberry32(seed);
  const q = new Float32Array(r * d);
  for (let i = 0; i < q.length; i++) q[i] = rng() - 0.5;
  orthonormaliseRows(q, r, d, rng);
  const y = new Float32Array(n * r);
  const yt = new Float32Array(r * n);
  const zt = new Float32Array(d * r);
  const block = 64;
  const project = async () => {
    for (let i0 = 0; i0 < n; i0 += block) {
      gemmNT(xc, q, y, Math.min(block, n - i0), r, d, i0 * d, 0, i0 * r);
      await ticker.tick(signal);
    }
  };
  for (let iter = 0; iter < 5; iter++) {
    await project();
    for (let i = 0; i < n; i++) for (let c = 0; c < r; c++) yt[c * n + i] = y[i * r + c];
    for (let j0 = 0; j0 < d; j0 += block) {
      gemmNT(xt, yt, zt, Math.min(block, d - j0), r, n, j0 * n, 0, j0 * r);
      await ticker.tick(signal);
    }
    for (let c = 0; c < r; c++) for (let j = 0; j < d; j++) q[c * d + j] = zt[j * r + c];
    orthonormaliseRows(q, r, d, rng);
  }
  await project();
  const gram = new Float64Array(r * r);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < r; a++) {
      const ya = y[i * r + a];
      for (let b = a; b < r; b++) gram[a * r + b] += ya * y[i * r + b];
    }
  }
  for (let a = 0; a < r; a++) for (let b = 0; b < a; b++) gram[a * r + b] = gram[b * r + a];
  const eig = symmetricEigen(gram, r);
  const components = new Float32Array(k * d);
  let kept = 0;
  for (let c = 0; c < k; c++) {
    kept += Math.max(0, eig.values[c]);
    let maxAbs = 0;
    let sign = 1;
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let a = 0; a < r; a++) s += eig.vectors[c * r + a] * q[a * d + j];
      components[c * d + j] = s;
      if (Math.abs(s) > maxAbs) {
        maxAbs = Math.abs(s);
        sign = s < 0 ? -1 : 1;
      }
    }
    // An eigenvector's sign is arbitrary; fixing it keeps the map from mirroring between runs.
    if (sign < 0) for (let j = 0; j < d; j++) components[c * d + j] = -components[c * d + j];
  }
  return { dim: d, k, mean, components, explained: total > 0 ? kept / total : 0 };
}

export async function projectRows(basis: PcaBasis, rows: readonly Float32Array[], signal?: AbortSignal): Promise<Float32Array> {
  const { dim: d, k } = basis;
  const out = new Float32Array(rows.length * k);
  const block = 128;
  const buf = new Float32Array(block * d);
  const ticker = new Ticker(10);
  for (let i0 = 0; i0 < rows.length; i0 += block) {
    const m = Math.min(block, rows.length - i0);
    for (let b = 0; b < m; b++) {
      const x = rows[i0 + b];
      for (let j = 0; j < d; j++) buf[b * d + j] = x[j] - basis.mean[j];
    }
    gemmNT(buf, basis.components, out, m, k, d, 0, 0, i0 * k);
    await ticker.tick(signal);
  }
  return out;
}

interface PointMeta {
  itemId: number;
  sha256: string;
  kind: 'baseline-fit' | 'baseline' | 'scanned';
  decision: Decision | null;
  risk: number | null;
  label: LabelValue | null;
  source: string | null;
  time: number;
  state: 'new' | 'triaged' | 'closed' | null;
}

export class MapBuilder {
  private cache: { key: string; basis: PcaBasis } | null = null;

  constructor(private readonly store: Store) {}

  async build(req: ParsedReq<'map'>, baseline: string, encoderId: string, signal?: AbortSignal): Promise<Res<'map'>> {
    const db = this.store.db;
    const b = this.store.findBaseline(baseline);
    if (!b) throw new ApiError('not_found', `baseline '${baseline}' does not exist`);
    const ticker = new Ticker(10);
    const members = db
      .prepare(
        `SELECT i.id, i.sha256, bi.added_at FROM baseline_items bi JOIN items i ON i.id = bi.item_id
           JOIN embeddings e ON e.item_id = i.id AND e.encoder_id = ?
          WHERE bi.baseline_id = ? ORDER BY i.sha256`,
      )
      .all(encoderId, b.id) as { id: number; sha256: string; added_at: string }[];
    if (members.length < 2) {
      throw new ApiError('conflict', `baseline '${baseline}' has ${members.length} items with embeddings from ${encoderId}; the map needs at least 2`);
    }
    const labels = new Map(
      (
        db.prepare(`SELECT lb.item_id, lb.label FROM labels lb JOIN (SELECT item_id, MAX(id) AS id FROM labels GROUP BY item_id) m ON m.id = lb.id`).all() as {
          item_id: number; label: LabelValue;
        }[]
      ).map((r) => [r.item_id, r.label]),
    );
    const verdicts = new Map(
      (
        db.prepare(`SELECT l.item_id, l.decision, l.risk, (SELECT v0.source FROM verdicts v0 WHERE v0.item_id = l.item_id ORDER BY v0.id LIMIT 1) AS source, l.created_at, t.state FROM (${LATEST_VERDICTS_SQL}) l LEFT JOIN triage t ON t.item_id = l.item_id`).all() as {
          item_id: number; decision: Decision; risk: number; source: string; created_at: string; state: PointMeta['state'];
        }[]
      ).map((r) => [r.item_id, r]),
    );
    await ticker.tick(signal);
    const fit = members.slice(0, req.fit_sample);
    const fitIds = new Set(fit.map((m) => m.id));
    const memberIds = new Set(members.map((m) => m.id));
    const points: PointMeta[] = fit.map((m) => this.meta(m.id, m.sha256, 'baseline-fit', m.added_at, labels, verdicts));
    // Scanned items next (most recent first), then the rest of the baseline, up to max_points.
    const scanned = db
      .prepare(
        `SELECT i.id, i.sha256, l.created_at FROM (${LATEST_VERDICTS_SQL}) l JOIN items i ON i.id = l.item_id
           JOIN embeddings e ON e.item_id = i.id AND e.encoder_id = ? ORDER BY l.id DESC`,
      )
      .all(encoderId) as { id: number; sha256: string; created_at: string }[];
    let truncated = false;
    for (const s of scanned) {
      if (fitIds.has(s.id) || memberIds.has(s.id)) continue;
      if (points.length >= req.max_points) {
        truncated = true;
        break;
      }
      points.push(this.meta(s.id, s.sha256, 'scanned', s.created_at, labels, verdicts));
    }
    for (const m of members.slice(req.fit_sample)) {
      if (points.length >= req.max_points) {
        truncated = true;
        break;
      }
      points.push(this.meta(m.id, m.sha256, 'baseline', m.added_at, labels, verdicts));
    }
    const vectors = await this.vectors(points.map((p) => p.itemId), encoderId, signal);
    const fitKey = createHash('sha256')
      .update(`${encoderId}|${req.dims}|${MAP_SEED}|`)
      .update(fit.map((m) => m.sha256).join(','))
      .digest('hex')
      .slice(0, 16);
    if (this.cache?.key !== fitKey) {
      this.cache = { key: fitKey, basis: await fitPca(vectors.slice(0, fit.length), req.dims, MAP_SEED, signal) };
    }
    const basis = this.cache.basis;
    const projected = await projectRows(basis, vectors, signal);
    const sources = [...new Set(points.map((p) => p.source).filter((x): x is string => x !== null))].sort();
    const sourceIndex = new Map(sources.map((x, i) => [x, i]));
    const code = <T extends string>(v: T | null, table: Record<T, string>) => (v === null ? '-' : table[v]);
    return {
      baseline,
      encoder_id: encoderId,
      layout_key: fitKey,
      seed: MAP_SEED,
      dims: basis.k,
      n_fit: fit.length,
      n: points.length,
      vectors: float32ToBase64(projected),
      explained_variance: basis.explained,
      sha256: points.map((p) => p.sha256).join(''),
      kind: points.map((p) => ({ 'baseline-fit': 'f', baseline: 'b', scanned: 's' })[p.kind]).join(''),
      decision: points.map((p) => code(p.decision, { allow: 'a', review: 'r', block: 'b' })).join(''),
      label: points.map((p) => code(p.label, { benign: 'b', malicious: 'm' })).join(''),
      state: points.map((p) => code(p.state, { new: 'n', triaged: 't', closed: 'c' })).join(''),
      sources,
      source_index: int32ToBase64(points.map((p) => (p.source === null ? -1 : sourceIndex.get(p.source)!))),
      risk: float32ToBase64(points.map((p) => (p.risk === null ? Number.NaN : p.risk))),
      time: float64ToBase64(points.map((p) => p.time)),
      truncated,
    };
  }

  private meta(
    itemId: number,
    sha256: string,
    kind: PointMeta['kind'],
    at: string,
    labels: Map<number, LabelValue>,
    verdicts: Map<number, { decision: Decision; risk: number; source: string; created_at: string; state: PointMeta['state'] }>,
  ): PointMeta {
    const v = verdicts.get(itemId);
    return {
      itemId,
      sha256,
      kind,
      decision: v?.decision ?? null,
      risk: v ? Math.max(0, Math.min(1, v.risk)) : null,
      label: labels.get(itemId) ?? null,
      source: v?.source ?? (kind === 'scanned' ? null : 'baseline'),
      time: Date.parse(v?.created_at ?? at) || 0,
      state: v ? (v.state ?? 'new') : null,
    };
  }

  private async vectors(itemIds: number[], encoderId: string, signal?: AbortSignal): Promise<Float32Array[]> {
    const stmt = this.store.db.prepare('SELECT vector FROM embeddings WHERE item_id = ? AND encoder_id = ?');
    const ticker = new Ticker(10);
    const out: Float32Array[] = [];
    for (let i = 0; i < itemIds.length; i++) {
      const row = stmt.get(itemIds[i], encoderId) as { vector: Buffer };
      out.push(blobToVector(row.vector));
      if (i % 128 === 0) await ticker.tick(signal);
    }
    return out;
  }
}
