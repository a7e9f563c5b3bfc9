// Measures the expensive signals' per-item features: squeeze distances (extra passes of the
// primary encoder over squeezed pixels), the secondary encoder's embedding, and the patch
// texture statistic (no pass: arithmetic on the primary encoder's input). Each is
// looked up in the store first (item_features, embeddings) and stored once computed, so a
// baseline is measured once, at baseline-add time, and retraining never decodes it again.
// Items that arrive without pixels (their embedding came from the cache) are decoded again
// from where they were found, only if a feature is actually missing.
import fs from 'node:fs';

import type { ItemFeatures } from '../../../shared/detectors/detector-set.js';
import type { ImageEncoder } from '../encoders/index.js';
import { decodeImage, resizeForEncoder, type IngestLimits } from '../ingest/image.js';
import type { Store } from '../store/store.js';
import { FeatureStore } from './feature-store.js';
import { PATCH_TEXTURE_FEATURE, patchTexture } from './texture.js';
import { crossSqueezers, selectedSqueezers, squeezeDistances, squeezeFeatureNames, type SqueezeParams, type SqueezerName } from './squeeze.js';

export interface MeasureItem {
  itemId: number;
  sha256: string;
  path: string | null;
  /** The primary embedding (squeeze distances are measured from it). */
  vector: Float32Array;
  /** Primary encoder input, if still at hand. */
  pixels?: Float32Array;
  /** Secondary encoder input, if still at hand. */
  pixels2?: Float32Array;
  /** The original bytes of an in-memory item, for decoding again. */
  bytes?: Uint8Array;
}

export interface MeasureNeeds {
  squeeze: boolean;
  secondary: boolean;
  /** The squeezed copies' primary embeddings (squeeze_cross); measured with the squeeze distances. */
  squeezed?: boolean;
  /** The patch texture statistic (patch_texture). */
  texture?: boolean;
}

export interface MeasureOptions {
  /** Squeezer parameters, or null when the squeeze signal is not in use. */
  squeeze: SqueezeParams | null;
  /** Opens the secondary encoder, or null when the cross-encoder signal is not in use. */
  secondary: (() => Promise<ImageEncoder>) | null;
  /** Whether the patch_texture signal is in use. */
  texture: boolean;
  limits: IngestLimits;
  /**
   * Reuse stored features and store what is computed (baseline items are always stored).
   * Off, every requested feature is computed afresh, like embeddings with the cache off.
   */
  persist: boolean;
}

export class ExpensiveMeasurer {
  private readonly features: FeatureStore;

  constructor(
    private readonly store: Store,
    private readonly options: MeasureOptions,
  ) {
    this.features = new FeatureStore(store.db);
  }

  /** Squeeze feature names of the selected squeezers, in order (what SqueezeModel expects). */
  get squeezeNames(): string[] | null {
    if (!this.options.squeeze) return null;
    const names = squeezeFeatureNames(this.options.squeeze);
    return selectedSqueezers(this.options.squeeze).map((s) => names[s]);
  }

  /**
   * Encoder ids under which the squeezed copies' embeddings are kept in the embeddings table
   * (`<primary id>#<squeeze feature name>`, so a squeezer parameter change never reuses them),
   * in crossSqueezers order; null when none of those squeezers is selected.
   */
  squeezedIds(primaryEncoderId: string): string[] | null {
    if (!this.options.squeeze) return null;
    const names = squeezeFeatureNames(this.options.squeeze);
    const ids = crossSqueezers(this.options.squeeze).map((s) => `${primaryEncoderId}#${names[s]}`);
    return ids.length > 0 ? ids : null;
  }

  private cachedSqueezed(itemId: number, primaryEncoderId: string): Float32Array[] | null {
    const ids = this.squeezedIds(primaryEncoderId);
    if (!ids) return null;
    const out: Float32Array[] = [];
    for (const id of ids) {
      const v = this.store.cachedEmbedding(itemId, id);
      if (!v) return null;
      out.push(v);
    }
    return out;
  }

  private storedTexture(itemId: number, primaryEncoderId: string): number | null {
    return this.features.get(itemId, primaryEncoderId, [PATCH_TEXTURE_FEATURE])?.[0] ?? null;
  }

  /** Stored features only, no computation (training reads these for the whole baseline). */
  cached(item: Pick<MeasureItem, 'itemId'>, primaryEncoderId: string, secondaryEncoderId: string | null): ItemFeatures {
    const names = this.squeezeNames;
    return {
      squeeze: names ? this.features.get(item.itemId, primaryEncoderId, names) : null,
      secondary: secondaryEncoderId ? this.store.cachedEmbedding(item.itemId, secondaryEncoderId) ?? null : null,
      squeezed: this.cachedSqueezed(item.itemId, primaryEncoderId),
      texture: this.options.texture ? this.storedTexture(item.itemId, primaryEncoderId) : null,
    };
  }

  /**
   * Features for each item where needs[i] asks; null where not asked or not measurable
   * (the file is gone or changed, the decoder failed). `notes[i]` says why, when it failed.
   */
  async measure(
    items: readonly MeasureItem[],
    needs: readonly MeasureNeeds[],
    encoder: ImageEncoder,
  ): Promise<{ features: ItemFeatures[]; notes: (string | null)[] }> {
    const names = this.squeezeNames;
    const out: ItemFeatures[] = items.map(() => ({ squeeze: null, secondary: null, squeezed: null, texture: null }));
    const squeezedIds = this.squeezedIds(encoder.id);
    const notes: (string | null)[] = items.map(() => null);
    let secondary: ImageEncoder | null = null;
    if (this.options.secondary && needs.some((n) => n.secondary)) {
      try {
        secondary = await this.options.secondary();
      } catch (err) {
        items.forEach((_, i) => { if (needs[i].secondary) notes[i] = `secondary encoder unavailable: ${(err as Error).message}`; });
      }
    }

    // 1. Whatever is stored already.
    const todoSqueeze: number[] = [];
    const todoSecondary: number[] = [];
    const todoTexture: number[] = [];
    items.forEach((item, i) => {
      const reuse = this.options.persist;
      if (needs[i].texture && this.options.texture) {
        out[i].texture = reuse ? this.storedTexture(item.itemId, encoder.id) : null;
        if (out[i].texture === null) todoTexture.push(i);
      }
      const wantSqueezed = !!needs[i].squeezed && !!squeezedIds;
      if ((needs[i].squeeze || wantSqueezed) && names) {
        if (needs[i].squeeze) out[i].squeeze = reuse ? this.features.get(item.itemId, encoder.id, names) : null;
        if (wantSqueezed) out[i].squeezed = reuse ? this.cachedSqueezed(item.itemId, encoder.id) : null;
        // The squeezed embeddings come with the distances: one pass measures both.
        if ((needs[i].squeeze && !out[i].squeeze) || (wantSqueezed && !out[i].squeezed)) todoSqueeze.push(i);
      }
      if (needs[i].secondary && secondary) {
        out[i].secondary = reuse ? this.store.cachedEmbedding(item.itemId, secondary.id) ?? null : null;
        if (!out[i].secondary) todoSecondary.push(i);
      }
    });
    if (todoSqueeze.length === 0 && todoSecondary.length === 0 && todoTexture.length === 0) return { features: out, notes };

    // 2. Pixels for the rest, decoding again where the pipeline did not keep them.
    const wantPixels = new Set([...todoSqueeze, ...todoTexture]);
    const wantPixels2 = new Set(todoSecondary);
    for (const i of new Set([...todoSqueeze, ...todoTexture, ...todoSecondary])) {
      const item = items[i];
      if ((wantPixels.has(i) && !item.pixels) || (wantPixels2.has(i) && !item.pixels2)) {
        try {
          await this.reload(item, encoder, secondary, wantPixels.has(i), wantPixels2.has(i));
        } catch (err) {
          notes[i] = (err as Error).message;
        }
      }
    }

    // 3. Patch texture: arithmetic on the pixels, no encoder pass.
    const { width, height } = encoder.inputSize;
    for (const i of todoTexture.filter((t) => items[t].pixels)) {
      out[i].texture = patchTexture(items[i].pixels!, width, height);
      if (this.shouldPersist(items[i].itemId)) this.features.put(items[i].itemId, encoder.id, { [PATCH_TEXTURE_FEATURE]: out[i].texture! });
    }

    // 4. Squeeze distances, all items in one batched encoder call.
    const sq = todoSqueeze.filter((i) => items[i].pixels);
    if (sq.length > 0 && this.options.squeeze && names) {
      const crossNames = crossSqueezers(this.options.squeeze);
      const kept: Map<SqueezerName, Float32Array>[] = sq.map(() => new Map());
      const distances = await squeezeDistances(
        encoder,
        sq.map((i) => items[i].pixels!),
        sq.map((i) => items[i].vector),
        this.options.squeeze,
        squeezedIds ? (j, name, v) => { if (crossNames.includes(name)) kept[j].set(name, v); } : undefined,
      );
      const byName = squeezeFeatureNames(this.options.squeeze);
      const selected = selectedSqueezers(this.options.squeeze);
      sq.forEach((i, j) => {
        out[i].squeeze = selected.map((s) => distances[j][s]!);
        const persist = this.shouldPersist(items[i].itemId);
        if (persist) {
          this.features.put(items[i].itemId, encoder.id, Object.fromEntries(selected.map((s) => [byName[s], distances[j][s]!])));
        }
        if (squeezedIds && kept[j].size === crossNames.length) {
          out[i].squeezed = crossNames.map((s) => kept[j].get(s)!);
          if (persist && needs[i].squeezed) {
            this.store.transaction(() => crossNames.forEach((s, c) => this.store.putEmbedding(items[i].itemId, squeezedIds[c], kept[j].get(s)!)));
          }
        }
      });
    }

    // 5. Secondary embeddings.
    const se = todoSecondary.filter((i) => items[i].pixels2);
    if (se.length > 0 && secondary) {
      const { width, height } = secondary.inputSize;
      const stride = width * height * 3;
      const batch = new Float32Array(stride * se.length);
      se.forEach((i, j) => batch.set(items[i].pixels2!, j * stride));
      const vectors = await secondary.embedPixels(batch, se.length);
      this.store.transaction(() => {
        se.forEach((i, j) => {
          out[i].secondary = vectors[j];
          if (this.shouldPersist(items[i].itemId)) this.store.putEmbedding(items[i].itemId, secondary!.id, vectors[j]);
        });
      });
    }
    return { features: out, notes };
  }

  private shouldPersist(itemId: number): boolean {
    if (this.options.persist) return true;
    return !!this.store.db.prepare('SELECT 1 FROM baseline_items WHERE item_id = ? LIMIT 1').get(itemId);
  }

  /** Decodes the item again from its bytes or its path; refuses content that is not the item's. */
  private async reload(item: MeasureItem, encoder: ImageEncoder, secondary: ImageEncoder | null, primary: boolean, second: boolean): Promise<void> {
    let bytes = item.bytes;
    if (!bytes) {
      if (!item.path || !fs.existsSync(item.path)) throw new Error('not measured: the file is no longer where it was found');
      bytes = new Uint8Array(await fs.promises.readFile(item.path));
    }
    const img = await decodeImage(bytes, this.options.limits);
    if (img.sha256 !== item.sha256) throw new Error(`not measured: ${item.path} has changed since it was scanned`);
    if (primary) item.pixels = await resizeForEncoder(img, encoder.inputSize.width, encoder.inputSize.height);
    if (second && secondary) item.pixels2 = await resizeForEncoder(img, secondary.inputSize.width, secondary.inputSize.height);
  }
}
