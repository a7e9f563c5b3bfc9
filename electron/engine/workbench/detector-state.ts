// Reading stored detector sets for measurement (TPR on labelled items, comparing versions,
// previews): the engine scores new media; the workbench re-scores cached embeddings, in
// slices, with any version, without touching which one is active.
import { gunzipSync } from 'node:zlib';
import { detectorSetFromJSON, type DetectorSet, type ItemFeatures, type VerdictScore } from '../../../shared/detectors/detector-set.js';
import { FeatureStore } from '../signals/feature-store.js';
import type { Store, DetectorSetRow } from '../store/store.js';
import { blobToVector } from '../store/store.js';
import { Ticker } from './cooperative.js';

export interface StoredState {
  format: string;
  members: { itemId: number; sha256: string; path: string | null }[];
  set: unknown;
  [key: string]: unknown;
}

/** The stored JSON of a detector set, exactly as the engine wrote it. */
export function readStoredState(store: Store, id: number): StoredState {
  const json = JSON.parse(gunzipSync(store.detectorSetState(id)).toString('utf8')) as StoredState;
  if (!json || typeof json !== 'object' || !Array.isArray(json.members) || json.set === undefined) {
    throw new Error(`detector set ${id} has a stored state this workbench cannot read (format '${String(json?.format)}')`);
  }
  return json;
}

export interface LoadedSet {
  row: DetectorSetRow;
  state: StoredState;
  set: DetectorSet;
}

/** A small cache: detector sets are immutable once stored, so an id identifies the content. */
export class DetectorSetCache {
  private readonly cache = new Map<number, LoadedSet>();

  constructor(private readonly store: Store) {}

  load(id: number): LoadedSet {
    const hit = this.cache.get(id);
    if (hit) return hit;
    const row = this.store.detectorSet(id);
    if (!row) throw new Error(`detector set ${id} does not exist`);
    const state = readStoredState(this.store, id);
    const loaded = { row, state, set: detectorSetFromJSON(state.set) };
    if (this.cache.size > 8) this.cache.delete(this.cache.keys().next().value as number);
    this.cache.set(id, loaded);
    return loaded;
  }
}

export interface EmbeddedItem {
  itemId: number;
  sha256: string;
  vector: Float32Array;
}

/** Cached embeddings of the given items for one encoder; items without one are left out. */
export function embeddingsFor(store: Store, itemIds: readonly number[], encoderId: string): EmbeddedItem[] {
  const out: EmbeddedItem[] = [];
  const stmt = store.db.prepare(
    `SELECT i.id AS itemId, i.sha256, e.vector FROM items i JOIN embeddings e ON e.item_id = i.id AND e.encoder_id = ?
      WHERE i.id = ?`,
  );
  for (const id of itemIds) {
    const r = stmt.get(encoderId, id) as { itemId: number; sha256: string; vector: Buffer } | undefined;
    if (r) out.push({ itemId: r.itemId, sha256: r.sha256, vector: blobToVector(r.vector) });
  }
  return out;
}

/**
 * The stored features the set's expensive signals need (squeeze distances, the secondary
 * encoder's embedding), per item; null where not measured, which the set then leaves out of
 * the decision exactly as the engine does for an item it could not measure.
 */
export function featuresFor(store: Store, set: DetectorSet, encoderId: string, itemIds: readonly number[]): ItemFeatures[] {
  const names = set.squeezeFeatureNames;
  const secondary = set.crossEncoder?.secondaryEncoderId ?? null;
  if (!names && !secondary) return itemIds.map(() => ({}));
  const fs = new FeatureStore(store.db);
  return itemIds.map((id) => ({
    squeeze: names ? fs.get(id, encoderId, names) : null,
    secondary: secondary ? (store.cachedEmbedding(id, secondary) ?? null) : null,
  }));
}

/** Scores items with a set in slices of `chunk`, yielding to the event loop in between. */
export async function scoreInSlices(
  set: DetectorSet,
  vectors: readonly Float32Array[],
  opts: { chunk?: number; signal?: AbortSignal; features?: readonly ItemFeatures[] } = {},
): Promise<VerdictScore[]> {
  const chunk = opts.chunk ?? 16;
  const out: VerdictScore[] = [];
  const ticker = new Ticker(10);
  for (let i = 0; i < vectors.length; i += chunk) {
    out.push(...set.score(vectors.slice(i, i + chunk), opts.features ? { features: opts.features.slice(i, i + chunk) } : {}));
    await ticker.tick(opts.signal);
  }
  return out;
}

/** The out-of-fold false-positive rates a set measured on its own held-out baseline items. */
export function fprOf(statsJson: string): { review: number; block: number } | null {
  try {
    const stats = JSON.parse(statsJson) as { oofFalsePositiveRate?: { review?: unknown; block?: unknown } };
    const r = stats.oofFalsePositiveRate;
    if (r && typeof r.review === 'number' && typeof r.block === 'number') return { review: r.review, block: r.block };
  } catch {
    // Stats written by another version of the engine: no FPR to show.
  }
  return null;
}
