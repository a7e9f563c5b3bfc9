// A red-team run: read the source images, attack each one (or the whole set, for the universal
// perturbation) through the active encoder, write the results as PNGs at the encoder's input
// size, and describe them in manifest.json.
//
// Everything the manifest says about an output is measured on the file as written: the PNG is
// decoded and resized again exactly as the engine's ingest would (224 → 224 is the identity,
// and that is checked for every file), and its embedding, shift and L-inf come from those
// pixels. So a scan of the folder sees precisely what the manifest describes.

import { createHash } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import type { Rng } from '../../../shared/types.js';
import { deriveRng } from '../../../shared/math/rng.js';
import type { ImageEncoder } from '../encoders/encoder.js';
import { decodeImage, IngestError, readAndDecodeImage, resizeForEncoder, type DecodedImage } from '../ingest/image.js';
import { ATTACK_NAMES, attackFamily, isAttackName, isTargeted, usesEps, type AttackName } from './attacks.js';
import { adaptiveCost, adaptiveForward, describeAdaptive, type AdaptiveOptions } from './adaptive.js';
import { benignTransform, type BenignKind } from './benign.js';
import { patchAttack, patchSide, PATCH_DEFAULTS, PATCH_PALETTES, type PatchPalette, type Region } from './patch.js';
import { cosine, cosineDistance, epsLevels, linf255, throwIfCancelled, toBytes, type AttackResult, type Forward, type ImageSize, type Objective } from './pixels.js';
import { randomSearchQueries } from './random-search.js';
import { positiveInt, spsaPgd, SPSA_DEFAULTS } from './spsa.js';
import { squareAttack, SQUARE_DEFAULTS } from './square.js';
import { typographicAttack } from './typographic.js';
import { applyUniversal, fitUniversal, saveUniversalDelta, UNIVERSAL_DEFAULTS } from './universal.js';

export const MANIFEST_FORMAT = 'parallax.redteam/1';

/** A bad option (unknown attack, eps under one grey level, missing or unreadable target…): the caller's to fix. */
export class RedteamInputError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RedteamInputError';
  }
}

export interface RedteamProgress {
  done: number;
  total: number;
  detail?: string;
}

export interface RedteamOptions {
  /** Source images (any format ingest reads). */
  files: string[];
  attack: AttackName;
  /** L-inf budget in [0,1] units (8/255 etc.); ignored by patch, typographic and the benign controls. */
  eps: number;
  /** Output folder (created if missing; existing files of the same names are replaced). */
  out: string;
  encoder: ImageEncoder;
  /** Image whose embedding the targeted attack pulls towards. */
  target?: string;
  /** Default 1. */
  seed?: number;
  /** spsa-pgd: PGD steps (30); square, patch: iterations (1000); universal: SPSA steps (50). */
  steps?: number;
  /** spsa-pgd: directions per step (16); universal: directions per step (8). */
  samples?: number;
  /** patch: fraction of the image the patch covers (0.06). */
  patchArea?: number;
  /** patch: 'colour' (default) or 'grey' (black and white only; family 'patch-grey'). */
  patchPalette?: PatchPalette;
  /**
   * Detector-aware: the attack also moves the squeezed copies and the cross encoder's view
   * along (adaptive.ts). Query-based attacks only (spsa-pgd*, square, universal, patch).
   */
  adaptive?: AdaptiveOptions;
  /** Inputs already found unreadable (e.g. while walking folders): carried into the manifest's errors. */
  errors?: RedteamError[];
  onProgress?: (p: RedteamProgress) => void;
  signal?: AbortSignal;
}

export interface RedteamItem {
  /** The source file as given. */
  source: string;
  /** File name of the attacked image inside the output folder. */
  output: string;
  /** SHA-256 of the PNG's bytes (what the engine will key the item by). */
  sha256: string;
  /** Forward passes spent on this image (clean reference included); 0 for universal, whose fitting is counted once. */
  queries: number;
  /** Cosine distance between the clean and the attacked (as written) embedding. */
  embedding_shift: number;
  /** Largest per-value change in grey levels (0–255), as written. */
  linf: number;
  target_similarity_before?: number;
  target_similarity_after?: number;
  /** Patch and typographic: the only pixels that changed lie in here. */
  region?: Region;
  /** Typographic: what the image says. */
  text?: string;
  /** Benign controls and typographic: what was done. */
  params?: Record<string, number | string | null>;
  /** Wall time spent producing this image (for lockstep attacks: its share of the batch). */
  seconds: number;
}

export interface RedteamError {
  source: string;
  reason: string;
}

export interface RedteamManifest {
  format: typeof MANIFEST_FORMAT;
  attack: AttackName;
  family: string;
  /** [0,1] units; null for attacks without an L-inf budget. */
  eps: number | null;
  /** The budget in whole grey levels actually enforced (floor of eps × 255). */
  eps_levels: number | null;
  encoder_id: string;
  seed: number;
  created_at: string;
  /** The budgets used (defaults filled in). */
  params: Record<string, number | string>;
  target?: { file: string; sha256: string };
  universal?: { fit_queries: number; fit_images: number; fit_score: number; delta_png: string; delta_json: string };
  items: RedteamItem[];
  errors: RedteamError[];
  seconds: number;
}

/** The attacks driven by forward passes: the ones an adaptive forward pass can steer. */
export const QUERY_ATTACKS: readonly AttackName[] = ['spsa-pgd', 'spsa-pgd-targeted', 'square', 'universal', 'patch'];

/** square and patch score one candidate per image per call, so images share forward calls in groups this big. */
const LOCKSTEP_GROUP = 8;

/** The family a run's manifest names: a grey patch and a detector-aware attack are variants an evaluation keeps apart. */
function familyOf(opts: RedteamOptions): string {
  let family = attackFamily(opts.attack);
  if (opts.attack === 'patch' && opts.patchPalette === 'grey') family += '-grey';
  return opts.adaptive ? `${family}-adaptive` : family;
}

export async function runRedteam(opts: RedteamOptions): Promise<RedteamManifest> {
  const started = performance.now();
  const { attack, encoder } = opts;
  const levels = checkOptions(opts);
  const seed = opts.seed ?? 1;
  const size: ImageSize = { ...encoder.inputSize };
  // `measure` is the primary encoder, what every number in the manifest is about; `forward`
  // is what the attack queries (the same, unless the attack is detector-aware).
  const measure: Forward = (pixels, n) => encoder.embedPixels(pixels, n);
  const forward: Forward = opts.adaptive ? adaptiveForward(encoder, size, opts.adaptive) : measure;
  const params = budgets(opts);
  if (opts.adaptive) {
    const cost = adaptiveCost(opts.adaptive);
    params.adaptive = describeAdaptive(opts.adaptive);
    params.adaptive_cost = `${cost.primary} primary + ${cost.secondary} cross-encoder passes per query`;
  }

  await mkdir(opts.out, { recursive: true });
  const manifest: RedteamManifest = {
    format: MANIFEST_FORMAT,
    attack,
    family: familyOf(opts),
    eps: usesEps(attack) ? opts.eps : null,
    eps_levels: levels,
    encoder_id: encoder.id,
    seed,
    created_at: new Date().toISOString(),
    params,
    items: [],
    errors: [...(opts.errors ?? [])],
    seconds: 0,
  };

  let targetEmbedding: Float32Array | undefined;
  let targetReference: Float32Array | undefined;
  if (isTargeted(attack)) {
    const target = opts.target!;
    const loaded = await loadImage(target, size).catch((err: unknown) => {
      throw new RedteamInputError(`target ${target}: ${reasonOf(err)}`, { cause: err });
    });
    [targetEmbedding] = await measure(loaded.clean, 1);
    [targetReference] = opts.adaptive ? await forward(loaded.clean, 1) : [targetEmbedding];
    manifest.target = { file: target, sha256: loaded.sha256 };
  }

  const fitSteps = attack === 'universal' ? (opts.steps ?? UNIVERSAL_DEFAULTS.steps) : 0;
  const total = opts.files.length + fitSteps;
  let done = 0;
  const progress = (detail?: string) => opts.onProgress?.({ done, total, detail });
  progress(`${attack}: starting`);

  const ctx: RunContext = { opts, size, forward, measure, manifest, targetEmbedding, targetReference, seedFor: (sha256) => imageRng(seed, attack, sha256) };
  const record = async (inputs: Loaded[], outcomes: Outcome[], seconds: number) => {
    await recordOutcomes(ctx, inputs, outcomes, seconds);
    done += inputs.length;
    progress(`${attack}: ${manifest.items.length} of ${opts.files.length} images written`);
  };
  const fail = (source: string, err: unknown) => {
    manifest.errors.push({ source, reason: reasonOf(err) });
    done += 1;
    progress(`${attack}: ${source} skipped: ${reasonOf(err)}`);
  };

  const indexed = opts.files.map((file, index) => ({ file, index }));
  if (attack === 'universal') {
    // Fitted on every readable input: all of them are held in memory (≈600 KB each at 224×224).
    const loaded: Loaded[] = [];
    for (const { file, index } of indexed) {
      throwIfCancelled(opts.signal);
      try {
        // Only the resized pixels are kept: the originals could be tens of megabytes each.
        const { sha256, clean } = await loadImage(file, size);
        loaded.push({ sha256, clean, source: file, index });
      } catch (err) {
        if (!isItemError(err)) throw err;
        fail(file, err);
      }
    }
    if (loaded.length === 0) return finish(manifest, opts.out, started);
    const t0 = performance.now();
    const fitDone = done;
    const fit = await fitUniversal(
      loaded.map((l) => l.clean),
      {
        forward,
        size,
        eps: opts.eps,
        rng: deriveRng(seed, ATTACK_NAMES.indexOf(attack)),
        steps: opts.steps,
        samples: opts.samples,
        signal: opts.signal,
        onStep: (tick) => {
          done = fitDone + tick.step;
          progress(`universal: fitting δ, step ${tick.step}/${tick.steps}, mean shift ${tick.score.toFixed(3)}`);
        },
      },
    );
    done = fitDone + fitSteps;
    await saveUniversalDelta(path.join(opts.out, 'universal-delta.json'), path.join(opts.out, 'universal-delta.png'), fit, {
      size,
      eps: opts.eps,
      encoderId: encoder.id,
      fitImages: loaded.length,
    });
    manifest.universal = {
      fit_queries: fit.queries,
      fit_images: loaded.length,
      fit_score: fit.score,
      delta_png: 'universal-delta.png',
      delta_json: 'universal-delta.json',
    };
    const perImage = (performance.now() - t0) / 1000 / loaded.length;
    for (const item of loaded) {
      throwIfCancelled(opts.signal);
      await record([item], [{ pixels: applyUniversal(fit.delta, item.clean), queries: 0 }], perImage);
    }
    return finish(manifest, opts.out, started);
  }

  const group = attack === 'square' || attack === 'patch' ? LOCKSTEP_GROUP : 1;
  for (let start = 0; start < indexed.length; start += group) {
    throwIfCancelled(opts.signal);
    const inputs: Loaded[] = [];
    for (const { file, index } of indexed.slice(start, start + group)) {
      try {
        inputs.push({ ...(await loadImage(file, size)), source: file, index });
      } catch (err) {
        if (!isItemError(err)) throw err;
        fail(file, err);
      }
    }
    if (inputs.length === 0) continue;
    const t0 = performance.now();
    const outcomes = await attackGroup(ctx, inputs, (detail) => progress(detail));
    await record(inputs, outcomes, (performance.now() - t0) / 1000 / inputs.length);
  }
  return finish(manifest, opts.out, started);
}

// ---------------------------------------------------------------------------------------------

/** Validates everything checkable before any work; returns the eps budget in grey levels (null when unused). */
function checkOptions(opts: RedteamOptions): number | null {
  const { attack } = opts;
  if (!isAttackName(attack)) throw new RedteamInputError(`unknown attack '${String(attack)}' (one of: ${ATTACK_NAMES.join(', ')})`);
  if (isTargeted(attack) && !opts.target) throw new RedteamInputError(`attack '${attack}' needs a target image`);
  if (opts.seed !== undefined && !Number.isInteger(opts.seed)) throw new RedteamInputError(`seed must be an integer, got ${opts.seed}`);
  if (opts.adaptive && !QUERY_ATTACKS.includes(attack)) {
    throw new RedteamInputError(`'${attack}' does not query the encoder, so it has no detector-aware form (adaptive: ${QUERY_ATTACKS.join(', ')})`);
  }
  try {
    if (opts.steps !== undefined) positiveInt('steps', opts.steps);
    if (opts.samples !== undefined) positiveInt('samples', opts.samples);
    if (attack === 'patch' && opts.patchArea !== undefined) patchSide(opts.encoder.inputSize, opts.patchArea);
    if (opts.patchPalette !== undefined && (attack !== 'patch' || !PATCH_PALETTES.includes(opts.patchPalette))) {
      throw new RangeError(`palette ${String(opts.patchPalette)}: one of ${PATCH_PALETTES.join(', ')}, for the patch attack only`);
    }
    return usesEps(attack) ? epsLevels(opts.eps) : null;
  } catch (err) {
    throw new RedteamInputError((err as Error).message, { cause: err });
  }
}

interface Loaded {
  source: string;
  index: number;
  sha256: string;
  clean: Float32Array;
  /** The decoded original: kept only where an attack needs it (the geometric benign controls). */
  decoded?: DecodedImage;
}

interface Outcome {
  pixels: Float32Array;
  queries: number;
  region?: Region;
  text?: string;
  params?: Record<string, number | string | null>;
}

interface RunContext {
  opts: RedteamOptions;
  size: ImageSize;
  /** What the attack queries. */
  forward: Forward;
  /** The primary encoder: what the manifest's numbers are measured with. */
  measure: Forward;
  manifest: RedteamManifest;
  /** The target's primary embedding (measurement). */
  targetEmbedding?: Float32Array;
  /** What a targeted attack pulls towards: the target through `forward`. */
  targetReference?: Float32Array;
  seedFor(sha256: string): Rng;
}

async function attackGroup(ctx: RunContext, inputs: Loaded[], progress: (detail: string) => void): Promise<Outcome[]> {
  const { opts, size, forward } = ctx;
  const attack = opts.attack;
  const rngs = inputs.map((l) => ctx.seedFor(l.sha256));
  const names = inputs.length === 1 ? path.basename(inputs[0].source) : `${inputs.length} images`;
  const onStep = (tick: { step: number; steps: number; score: number }) =>
    progress(`${attack}: ${names}, step ${tick.step}/${tick.steps}, score ${tick.score.toFixed(3)}`);
  const plain = (r: AttackResult): Outcome => ({ pixels: r.pixels, queries: r.queries });

  switch (attack) {
    case 'spsa-pgd':
    case 'spsa-pgd-targeted': {
      const objective: Objective = ctx.targetReference ? { mode: 'toward', reference: ctx.targetReference } : { mode: 'away' };
      const out: Outcome[] = [];
      for (const [i, input] of inputs.entries()) {
        const r = await spsaPgd(input.clean, {
          forward,
          size,
          eps: opts.eps,
          objective,
          rng: rngs[i],
          steps: opts.steps,
          samples: opts.samples,
          signal: opts.signal,
          onStep,
        });
        out.push(plain(r));
      }
      return out;
    }
    case 'square': {
      const results = await squareAttack(
        inputs.map((l) => l.clean),
        { forward, size, eps: opts.eps, objectives: inputs.map(() => ({ mode: 'away' })), rngs, iterations: opts.steps, signal: opts.signal, onStep },
      );
      return results.map(plain);
    }
    case 'patch': {
      const results = await patchAttack(
        inputs.map((l) => l.clean),
        { forward, size, objectives: inputs.map(() => ({ mode: 'away' })), rngs, area: opts.patchArea, iterations: opts.steps, palette: opts.patchPalette, signal: opts.signal, onStep },
      );
      return results.map((r) => ({ pixels: r.pixels, queries: r.queries, region: r.region }));
    }
    case 'typographic': {
      const out: Outcome[] = [];
      for (const [i, input] of inputs.entries()) {
        const r = await typographicAttack(input.clean, { size, rng: rngs[i] });
        out.push({
          pixels: r.pixels,
          queries: 0,
          region: r.region,
          text: r.text,
          params: { font_size: r.fontSize, bold: r.bold ? 1 : 0, colour: r.colour, box: r.box },
        });
      }
      return out;
    }
    case 'benign-jpeg':
    case 'benign-resize':
    case 'benign-crop':
    case 'benign-color':
    case 'benign-rotate': {
      const kind = attack.slice('benign-'.length) as BenignKind;
      const out: Outcome[] = [];
      for (const [i, input] of inputs.entries()) {
        const r = await benignTransform(kind, input.decoded!, input.clean, size, rngs[i]);
        out.push({ pixels: r.pixels, queries: 0, params: r.params });
      }
      return out;
    }
    case 'universal':
      throw new Error('universal is fitted over the whole set, not per group');
  }
}

/** Writes each outcome as a PNG, checks ingest reads it back unchanged, measures it, and adds it to the manifest. */
async function recordOutcomes(ctx: RunContext, inputs: Loaded[], outcomes: Outcome[], seconds: number): Promise<void> {
  const { size, measure, manifest, opts } = ctx;
  const written: { name: string; bytes: Buffer; pixels: Float32Array }[] = [];
  for (const [i, input] of inputs.entries()) {
    const bytes = toBytes(outcomes[i].pixels);
    const png = await sharp(bytes, { raw: { width: size.width, height: size.height, channels: 3 } }).png().toBuffer();
    const reread = await resizeForEncoder(await decodeImage(new Uint8Array(png.buffer, png.byteOffset, png.byteLength)), size.width, size.height);
    for (let k = 0; k < reread.length; k++) {
      if (reread[k] !== Math.fround(bytes[k] / 255)) {
        throw new Error(`${input.source}: the PNG written does not read back as the attacked pixels (value ${k}: ${reread[k] * 255} vs ${bytes[k]})`);
      }
    }
    written.push({ name: outputName(input), bytes: png, pixels: reread });
  }

  // Clean and attacked embeddings in one call, measured on the pixels as read back.
  const n = inputs.length;
  const per = size.width * size.height * 3;
  const batch = new Float32Array(2 * n * per);
  inputs.forEach((input, i) => batch.set(input.clean, i * per));
  written.forEach((w, i) => batch.set(w.pixels, (n + i) * per));
  const embeddings = await measure(batch, 2 * n);

  for (const [i, input] of inputs.entries()) {
    const w = written[i];
    await writeFile(path.join(opts.out, w.name), w.bytes);
    const clean = embeddings[i];
    const attacked = embeddings[n + i];
    const outcome = outcomes[i];
    const item: RedteamItem = {
      source: input.source,
      output: w.name,
      sha256: createHash('sha256').update(w.bytes).digest('hex'),
      queries: outcome.queries,
      embedding_shift: round6(cosineDistance(clean, attacked)),
      linf: linf255(input.clean, w.pixels),
      seconds: round6(seconds),
    };
    if (ctx.targetEmbedding) {
      item.target_similarity_before = round6(cosine(clean, ctx.targetEmbedding));
      item.target_similarity_after = round6(cosine(attacked, ctx.targetEmbedding));
    }
    if (outcome.region) item.region = outcome.region;
    if (outcome.text) item.text = outcome.text;
    if (outcome.params) item.params = outcome.params;
    manifest.items.push(item);
  }
}

async function loadImage(file: string, size: ImageSize): Promise<{ sha256: string; decoded: DecodedImage; clean: Float32Array }> {
  const decoded = await readAndDecodeImage(file);
  return { sha256: decoded.sha256, decoded, clean: await resizeForEncoder(decoded, size.width, size.height) };
}

/** Per-image stream from the seed, the attack and the image's bytes, so an image is attacked the same way whatever else is in the run. */
function imageRng(seed: number, attack: AttackName, sha256: string): Rng {
  return deriveRng(seed, ATTACK_NAMES.indexOf(attack), parseInt(sha256.slice(0, 8), 16) | 0);
}

/** `0007-photo.png`: the input's position keeps names unique when two folders hold the same file name. */
function outputName(input: Loaded): string {
  const stem = path.basename(input.source).replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80) || 'image';
  return `${String(input.index + 1).padStart(4, '0')}-${stem}.png`;
}

function budgets(opts: RedteamOptions): Record<string, number | string> {
  switch (opts.attack) {
    case 'spsa-pgd':
    case 'spsa-pgd-targeted': {
      const steps = opts.steps ?? SPSA_DEFAULTS.steps;
      const samples = opts.samples ?? SPSA_DEFAULTS.samples;
      return { steps, samples, delta_levels: SPSA_DEFAULTS.delta * 255, tile: SPSA_DEFAULTS.tile, momentum: SPSA_DEFAULTS.momentum, queries_per_image: 1 + steps * (2 * samples + 1) };
    }
    case 'square': {
      const iterations = opts.steps ?? SQUARE_DEFAULTS.iterations;
      return { iterations, p_init: SQUARE_DEFAULTS.pInit, queries_per_image: randomSearchQueries(iterations) };
    }
    case 'patch': {
      const iterations = opts.steps ?? PATCH_DEFAULTS.iterations;
      return { iterations, area: opts.patchArea ?? PATCH_DEFAULTS.area, p_init: PATCH_DEFAULTS.pInit, palette: opts.patchPalette ?? PATCH_DEFAULTS.palette, queries_per_image: randomSearchQueries(iterations) };
    }
    case 'universal':
      return {
        steps: opts.steps ?? UNIVERSAL_DEFAULTS.steps,
        samples: opts.samples ?? UNIVERSAL_DEFAULTS.samples,
        minibatch: UNIVERSAL_DEFAULTS.minibatch,
        tile: SPSA_DEFAULTS.tile,
      };
    default:
      return {};
  }
}

async function finish(manifest: RedteamManifest, out: string, started: number): Promise<RedteamManifest> {
  manifest.seconds = round6((performance.now() - started) / 1000);
  // Written whole or not at all: a reader never sees half a manifest.
  const file = path.join(out, 'manifest.json');
  await writeFile(`${file}.tmp`, `${JSON.stringify(manifest, null, 2)}\n`);
  await rename(`${file}.tmp`, file);
  return manifest;
}

function isItemError(err: unknown): boolean {
  return err instanceof IngestError;
}

function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}
