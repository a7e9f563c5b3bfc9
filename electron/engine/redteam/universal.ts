// Universal perturbation: one δ with ‖δ‖∞ ≤ eps that moves every image's embedding (Moosavi-
// Dezfooli et al. 2017), fitted here gradient-free: SPSA estimates of the gradient of the mean
// score over a random minibatch of the images, sign steps with momentum, as in spsa.ts.
//
// δ lives on whole grey levels once fitted, so applying it to an image on the uint8 grid gives
// an image on the grid: no rounding, and the budget holds exactly. It is saved beside the
// attacked images so that it can be applied to images it was not fitted on (the real threat:
// one sticker-like perturbation, computed once, used everywhere).

import { readFile, writeFile } from 'node:fs/promises';
import sharp from 'sharp';
import type { Rng } from '../../../shared/types.js';
import { sampleWithoutReplacement } from '../../../shared/math/rng.js';
import {
  checkImages,
  epsLevels,
  rademacher,
  score,
  throwIfCancelled,
  type Forward,
  type ImageSize,
  type ProgressTick,
  type ResolvedObjective,
} from './pixels.js';
import { positiveInt, SPSA_DEFAULTS } from './spsa.js';

export interface UniversalOptions {
  forward: Forward;
  size: ImageSize;
  eps: number;
  rng: Rng;
  /** SPSA steps (default 50). */
  steps?: number;
  /** Directions per step; each costs 2 × minibatch forward passes (default 8). */
  samples?: number;
  /** Images per step (default 8, or all when fewer). */
  minibatch?: number;
  tile?: number;
  delta?: number;
  momentum?: number;
  /** Images δ is scored on to keep the best iterate (default 16, or all when fewer). */
  evalImages?: number;
  /** Score δ on the evaluation images every this many steps (default 5). */
  evalEvery?: number;
  signal?: AbortSignal;
  onStep?: (tick: ProgressTick) => void;
}

export const UNIVERSAL_DEFAULTS = { steps: 50, samples: 8, minibatch: 8, evalImages: 16, evalEvery: 5 } as const;

export interface UniversalFit {
  /** Per-value offsets, each a whole number of grey levels /255, |δ| ≤ levels/255. */
  delta: Float32Array;
  levels: number;
  /** Forward passes spent fitting (clean references included). */
  queries: number;
  /** Mean cosine distance δ reached on the evaluation images. */
  score: number;
}

/** Untargeted: pushes each image away from its own clean embedding. */
export async function fitUniversal(cleans: Float32Array[], opts: UniversalOptions): Promise<UniversalFit> {
  const { forward, size, rng } = opts;
  const n = cleans.length;
  if (n === 0) throw new RangeError('fitUniversal: no images to fit on');
  cleans.forEach((c, i) => checkImages(`fitUniversal image ${i}`, c, 1, size));
  const levels = epsLevels(opts.eps);
  const radius = levels / 255;
  const steps = positiveInt('steps', opts.steps ?? UNIVERSAL_DEFAULTS.steps);
  const samples = positiveInt('samples', opts.samples ?? UNIVERSAL_DEFAULTS.samples);
  const minibatch = Math.min(n, positiveInt('minibatch', opts.minibatch ?? UNIVERSAL_DEFAULTS.minibatch));
  const tile = positiveInt('tile', opts.tile ?? SPSA_DEFAULTS.tile);
  const delta = opts.delta ?? SPSA_DEFAULTS.delta;
  const momentum = opts.momentum ?? SPSA_DEFAULTS.momentum;
  const evalEvery = positiveInt('evalEvery', opts.evalEvery ?? UNIVERSAL_DEFAULTS.evalEvery);
  const evalSet = Array.from(sampleWithoutReplacement(n, Math.min(n, opts.evalImages ?? UNIVERSAL_DEFAULTS.evalImages), rng));
  const per = cleans[0].length;
  const step0 = radius / 4;

  let queries = 0;
  const objectives: ResolvedObjective[] = [];
  for (let start = 0; start < n; start += 32) {
    const chunk = cleans.slice(start, start + 32);
    const embeddings = await forward(concat(chunk), chunk.length);
    queries += chunk.length;
    for (const e of embeddings) objectives.push({ mode: 'away', reference: e });
  }

  const d = new Float32Array(per);
  const m = new Float64Array(per);
  const g = new Float64Array(per);
  let best: Float32Array = new Float32Array(per);
  let bestScore = 0;

  const meanScore = async (images: number[], offset: Float32Array): Promise<number> => {
    const batch = new Float32Array(images.length * per);
    images.forEach((img, k) => addClipped(cleans[img], offset, batch.subarray(k * per, (k + 1) * per)));
    const embeddings = await forward(batch, images.length);
    queries += images.length;
    return embeddings.reduce((sum, e, k) => sum + score(objectives[images[k]], e), 0) / images.length;
  };
  const consider = async () => {
    const rounded = roundToLevels(d);
    const s = await meanScore(evalSet, rounded);
    if (s > bestScore) {
      bestScore = s;
      best = rounded;
    }
  };

  const dirs = Array.from({ length: samples }, () => new Float32Array(per));
  // All probes of a step in one forward call: [+v₁ × minibatch, −v₁ × minibatch, +v₂ …].
  const batch = new Float32Array(2 * samples * minibatch * per);
  for (let t = 0; t < steps; t++) {
    throwIfCancelled(opts.signal);
    const images = Array.from(sampleWithoutReplacement(n, minibatch, rng));
    for (let k = 0; k < samples; k++) {
      const v = rademacher(size, tile, rng, dirs[k]);
      images.forEach((img, b) => {
        const clean = cleans[img];
        const plus = ((2 * k) * minibatch + b) * per;
        const minus = ((2 * k + 1) * minibatch + b) * per;
        for (let i = 0; i < per; i++) {
          batch[plus + i] = Math.min(1, Math.max(0, clean[i] + d[i] + delta * v[i]));
          batch[minus + i] = Math.min(1, Math.max(0, clean[i] + d[i] - delta * v[i]));
        }
      });
    }
    const embeddings = await forward(batch, 2 * samples * minibatch);
    queries += 2 * samples * minibatch;
    const mean = (from: number) => {
      let sum = 0;
      for (let b = 0; b < minibatch; b++) sum += score(objectives[images[b]], embeddings[from + b]);
      return sum / minibatch;
    };
    g.fill(0);
    for (let k = 0; k < samples; k++) {
      const diff = mean(2 * k * minibatch) - mean((2 * k + 1) * minibatch);
      const v = dirs[k];
      for (let i = 0; i < per; i++) g[i] += diff * v[i];
    }
    let l1 = 0;
    for (let i = 0; i < per; i++) l1 += Math.abs(g[i]);
    const scale = l1 > 0 ? per / l1 : 0;
    const alpha = t < steps / 2 ? step0 : t < (3 * steps) / 4 ? step0 / 2 : step0 / 4;
    for (let i = 0; i < per; i++) {
      m[i] = momentum * m[i] + g[i] * scale;
      d[i] = Math.min(radius, Math.max(-radius, d[i] + (m[i] > 0 ? alpha : m[i] < 0 ? -alpha : 0)));
    }
    if ((t + 1) % evalEvery === 0 || t === steps - 1) await consider();
    opts.onStep?.({ step: t + 1, steps, score: bestScore });
  }
  return { delta: best, levels, queries, score: bestScore };
}

/** Forward passes fitUniversal spends on n images with these budgets. */
export function universalQueries(n: number, opts: Pick<UniversalOptions, 'steps' | 'samples' | 'minibatch' | 'evalImages' | 'evalEvery'> = {}): number {
  const steps = opts.steps ?? UNIVERSAL_DEFAULTS.steps;
  const samples = opts.samples ?? UNIVERSAL_DEFAULTS.samples;
  const minibatch = Math.min(n, opts.minibatch ?? UNIVERSAL_DEFAULTS.minibatch);
  const evalImages = Math.min(n, opts.evalImages ?? UNIVERSAL_DEFAULTS.evalImages);
  const evalEvery = opts.evalEvery ?? UNIVERSAL_DEFAULTS.evalEvery;
  const evaluations = Math.floor(steps / evalEvery) + (steps % evalEvery === 0 ? 0 : 1);
  return n + steps * samples * 2 * minibatch + evaluations * evalImages;
}

/**
 * Adds δ to each of the images in `pixels` (n × δ.length values, NHWC on the uint8 grid) and
 * clips to [0, 1]. The result is on the grid again and within δ's budget of each image.
 */
export function applyUniversal(delta: Float32Array, pixels: Float32Array): Float32Array {
  if (delta.length === 0 || pixels.length % delta.length !== 0) {
    throw new RangeError(`applyUniversal: ${pixels.length} values are not a whole number of images of ${delta.length} values (the size δ was fitted at)`);
  }
  const out = new Float32Array(pixels.length);
  for (let start = 0; start < pixels.length; start += delta.length) {
    addClipped(pixels.subarray(start, start + delta.length), delta, out.subarray(start, start + delta.length));
  }
  for (let i = 0; i < out.length; i++) out[i] = Math.round(out[i] * 255) / 255;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Saving and loading δ. The PNG stores 128 + δ·255 per value (exact for |δ| ≤ 127/255) so that
// it can be looked at; the JSON is the canonical form and says what δ is.

export const UNIVERSAL_FORMAT = 'parallax.redteam.universal/1';

export interface UniversalDeltaFile {
  format: typeof UNIVERSAL_FORMAT;
  width: number;
  height: number;
  eps: number;
  levels: number;
  encoder_id: string;
  fit_queries: number;
  fit_images: number;
  /** How `data` encodes δ: signed bytes (grey levels), NHWC, base64. */
  encoding: 'int8-levels-nhwc-base64';
  data: string;
  /** The same δ as a picture: value = 128 + level. */
  png: string;
}

export async function saveUniversalDelta(
  jsonPath: string,
  pngPath: string,
  fit: UniversalFit,
  meta: { size: ImageSize; eps: number; encoderId: string; fitImages: number },
): Promise<void> {
  const { width, height } = meta.size;
  checkImages('saveUniversalDelta', fit.delta, 1, meta.size);
  const levels = new Int8Array(fit.delta.length);
  const picture = new Uint8Array(fit.delta.length);
  for (let i = 0; i < fit.delta.length; i++) {
    levels[i] = Math.round(fit.delta[i] * 255);
    picture[i] = 128 + levels[i];
  }
  await writeFile(pngPath, await sharp(picture, { raw: { width, height, channels: 3 } }).png().toBuffer());
  const file: UniversalDeltaFile = {
    format: UNIVERSAL_FORMAT,
    width,
    height,
    eps: meta.eps,
    levels: fit.levels,
    encoder_id: meta.encoderId,
    fit_queries: fit.queries,
    fit_images: meta.fitImages,
    encoding: 'int8-levels-nhwc-base64',
    data: Buffer.from(levels.buffer, levels.byteOffset, levels.byteLength).toString('base64'),
    png: pngPath.split(/[\\/]/).pop()!,
  };
  await writeFile(jsonPath, `${JSON.stringify(file, null, 2)}\n`);
}

/** Reads δ saved by saveUniversalDelta (the .json), ready for applyUniversal. */
export async function loadUniversalDelta(jsonPath: string): Promise<{ delta: Float32Array; file: UniversalDeltaFile }> {
  let file: UniversalDeltaFile;
  try {
    file = JSON.parse(await readFile(jsonPath, 'utf8')) as UniversalDeltaFile;
  } catch (err) {
    throw new Error(`${jsonPath}: cannot read a universal perturbation: ${(err as Error).message}`, { cause: err });
  }
  if (file.format !== UNIVERSAL_FORMAT) throw new Error(`${jsonPath}: format is '${String(file.format)}', expected '${UNIVERSAL_FORMAT}'`);
  const bytes = Buffer.from(file.data, 'base64');
  if (bytes.length !== file.width * file.height * 3) {
    throw new Error(`${jsonPath}: holds ${bytes.length} values, expected ${file.width}×${file.height}×3`);
  }
  const levels = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  const delta = new Float32Array(levels.length);
  for (let i = 0; i < levels.length; i++) {
    if (Math.abs(levels[i]) > file.levels) throw new Error(`${jsonPath}: value ${levels[i]} at ${i} exceeds the budget of ±${file.levels} levels`);
    delta[i] = levels[i] / 255;
  }
  return { delta, file };
}

// ---------------------------------------------------------------------------------------------

function addClipped(image: Float32Array, offset: Float32Array, out: Float32Array): void {
  for (let i = 0; i < image.length; i++) out[i] = Math.min(1, Math.max(0, image[i] + offset[i]));
}

function roundToLevels(d: Float32Array): Float32Array {
  const out = new Float32Array(d.length);
  for (let i = 0; i < d.length; i++) out[i] = Math.round(d[i] * 255) / 255;
  return out;
}

function concat(images: Float32Array[]): Float32Array {
  const per = images[0]?.length ?? 0;
  const out = new Float32Array(images.length * per);
  images.forEach((img, i) => out.set(img, i * per));
  return out;
}
