// `parallax redteam <images...> --attack NAME ...`: writes attacked copies of images (and the
// benign controls) with a manifest, for testing the detectors against the active encoder.
// Standard output carries the summary (or the manifest with --json); progress goes to stderr.

import path from 'node:path';
import { parseArgs } from 'node:util';
import type { ParallaxConfig } from '../../../shared/config.js';
import { CancelledError } from '../concurrency.js';
import { openCrossEncoder, openImageEncoder, type ImageEncoder } from '../encoders/index.js';
import { squeezeParamsOf, SQUEEZE_DEFAULTS } from '../signals/squeeze.js';
import { describeAdaptive, type AdaptiveOptions } from '../redteam/adaptive.js';
import { QUERY_ATTACKS } from '../redteam/run.js';
import { walkMedia } from '../ingest/walk.js';
import {
  ATTACK_NAMES,
  isAttackName,
  isTargeted,
  parseEps,
  PATCH_PALETTES,
  RedteamInputError,
  runRedteam,
  usesEps,
  type PatchPalette,
  type RedteamError,
  type RedteamManifest,
} from '../redteam/index.js';
import { ProgressBar } from './progress.js';
import { openAudioEncoder } from '../audio/index.js';
import { AUDIO_ATTACKS, isAudioAttack, runAudioRedteam } from '../redteam/audio.js';

export const REDTEAM_USAGE = `Usage:
  parallax redteam <image|folder...> --attack NAME --out DIR [--eps E] [--target FILE]
                   [--steps N] [--samples N] [--seed S] [--palette grey] [--adaptive]
                   [--json] [--quiet]

Writes attacked copies of the images as 224×224 PNGs in DIR with DIR/manifest.json
(embedding shift, L-inf, forward passes used, sha256 of each file).

Attacks (gradient-free: forward passes of the configured encoder only):
  spsa-pgd            L-inf PGD with SPSA gradient estimates, pushes the embedding away
  spsa-pgd-targeted   the same, pulling the embedding onto --target FILE's
  square              Square Attack (L-inf random search)
  universal           one perturbation fitted over all the images, applied to each
  patch               an unconstrained square patch (~6% of the image)
  typographic         prompt-injection text written into the image
  audio-noise         (audio inputs) white-noise bursts, 3 × 60 ms at 0 dB SNR
  audio-ultrasonic    (audio inputs) AM carrier at 19 kHz, written at 48 kHz
  audio-spsa          (audio inputs) SPSA L-inf PGD on the audio encoder; --eps in
                      sample units (default 0.01 ≈ −40 dBFS)
  benign-jpeg, benign-resize, benign-crop, benign-color, benign-rotate
                      everyday changes that must NOT be flagged

Options:
  --eps E        L-inf budget for spsa-pgd*, square, universal: 8/255, 0.0314, or 8 (grey levels)
  --target FILE  image to pull towards (spsa-pgd-targeted)
  --steps N      spsa-pgd: steps (30); square, patch: iterations (1000); universal: steps (50)
  --samples N    spsa-pgd: directions per step (16); universal: directions per step (8)
  --seed S       integer seed (1)
  --palette P    patch: colour (default; the eight extreme colours) or grey (black and
                 white only, no colour difference for patch_texture to see); family
                 'patch-grey'
  --adaptive     detector-aware: the attack must also carry the squeezed copies (median,
                 JPEG, resize) and the cross encoder's view along, as an attacker who knows
                 Parallax's signals would; each query costs those passes too. Family gets
                 '-adaptive'. spsa-pgd*, square, universal and patch only
  --json         print the manifest instead of a summary
  -q, --quiet    no progress

Exit codes: 0 done; 2 bad flags; 3 some inputs could not be read (listed, the rest done);
1 fatal error; 130 cancelled.`;

class UsageError extends Error {}

export interface RedteamCommandContext {
  dataDir: string;
  config: ParallaxConfig;
  /** Where results go (default process.stdout); tests and embedders pass their own. */
  stdout?: Pick<NodeJS.WritableStream, 'write'>;
  /** Where progress and diagnostics go (default process.stderr). */
  stderr?: NodeJS.WriteStream;
}

export async function redteamCommand(argv: string[], ctx: RedteamCommandContext): Promise<number> {
  const stdout = ctx.stdout ?? process.stdout;
  const stderr = ctx.stderr ?? process.stderr;
  const attackAt = argv.indexOf('--attack');
  const attackArg = attackAt >= 0 ? argv[attackAt + 1] : argv.find((a) => a.startsWith('--attack='))?.slice('--attack='.length);
  if (isAudioAttack(attackArg)) return audioRedteamCommand(argv, ctx, stdout, stderr);
  let request: Request;
  try {
    request = parseRequest(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    stderr.write(`parallax redteam: ${err.message}\n\n${REDTEAM_USAGE}\n`);
    return 2;
  }
  if (request.help) {
    stdout.write(`${REDTEAM_USAGE}\n`);
    return 0;
  }

  const progress = new ProgressBar(stderr, !request.quiet);
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) process.exit(130);
    stderr.write('\nparallax redteam: stopping after the current step (Ctrl-C again to quit now)\n');
    controller.abort();
  };
  process.on('SIGINT', onSigint);

  let encoder: ImageEncoder | undefined;
  let secondary: ImageEncoder | null = null;
  try {
    const files: string[] = [];
    const errors: RedteamError[] = [];
    for await (const entry of walkMedia(request.inputs)) {
      if (entry.error) errors.push({ source: entry.path, reason: entry.error });
      else files.push(entry.path);
    }
    if (files.length === 0) {
      for (const e of errors) stderr.write(`error  ${e.source}: ${e.reason}\n`);
      stderr.write(`parallax redteam: no image files found in ${request.inputs.join(', ')}\n`);
      return 2;
    }

    const model = ctx.config.embedding_anomaly_detection.embedding_model;
    encoder = await openImageEncoder({ model: model.name, device: model.device, batchSize: model.batch_size, threads: model.threads });
    if (!request.quiet) stderr.write(`redteam ${request.attack}: ${files.length} images, encoder ${encoder.id} on ${encoder.provider}\n`);
    let adaptive: AdaptiveOptions | undefined;
    if (request.adaptive) {
      // The detector's own settings: the squeezers it runs and the cross encoder it consults.
      const methods = ctx.config.embedding_anomaly_detection.detection_methods;
      const squeeze = squeezeParamsOf(methods.transformation_consistency);
      if (methods.cross_encoder.mode !== 'off') {
        secondary = await openCrossEncoder(methods.cross_encoder.model, { device: model.device, batchSize: model.batch_size, threads: model.threads });
      }
      if (!squeeze && !secondary) throw new RedteamInputError('--adaptive: transformation_consistency and cross_encoder are both off, so there is nothing to adapt to');
      adaptive = { squeeze: squeeze ?? { ...SQUEEZE_DEFAULTS, squeezers: [] }, secondary };
      if (!request.quiet) stderr.write(`redteam ${request.attack}: detector-aware (${describeAdaptive(adaptive)})\n`);
    }

    const manifest = await runRedteam({
      files,
      attack: request.attack,
      eps: request.eps,
      out: request.out,
      encoder,
      target: request.target,
      seed: request.seed,
      steps: request.steps,
      samples: request.samples,
      patchPalette: request.palette,
      adaptive,
      errors,
      signal: controller.signal,
      onProgress: (p) => progress.update(request.attack, p.done, p.total),
    });
    progress.done();
    if (request.json) stdout.write(`${JSON.stringify(manifest, null, 2)}\n`);
    else stdout.write(summary(manifest, request.out));
    return manifest.errors.length > 0 ? 3 : 0;
  } catch (err) {
    progress.done();
    if (err instanceof CancelledError) {
      stderr.write(`parallax redteam: ${err.message}\n`);
      return 130;
    }
    // Bad values only detectable once the run starts (an eps under one grey level, an unreadable target) are usage errors too.
    if (err instanceof RedteamInputError) {
      stderr.write(`parallax redteam: ${err.message}\n`);
      return 2;
    }
    stderr.write(`parallax redteam: ${err instanceof Error ? err.message : String(err)}\n`);
    if (process.env.PARALLAX_DEBUG && err instanceof Error) stderr.write(`${err.stack}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSigint);
    await encoder?.close();
    await secondary?.close();
  }
}

// ---------------------------------------------------------------------------------------------

interface Request {
  help: boolean;
  inputs: string[];
  attack: (typeof ATTACK_NAMES)[number];
  eps: number;
  out: string;
  target?: string;
  steps?: number;
  samples?: number;
  seed?: number;
  adaptive: boolean;
  palette?: PatchPalette;
  json: boolean;
  quiet: boolean;
}

/** The command's flags, image and audio attacks alike. */
const OPTIONS = {
  attack: { type: 'string' },
  eps: { type: 'string' },
  out: { type: 'string' },
  target: { type: 'string' },
  steps: { type: 'string' },
  samples: { type: 'string' },
  seed: { type: 'string' },
  adaptive: { type: 'boolean', default: false },
  palette: { type: 'string' },
  json: { type: 'boolean', default: false },
  quiet: { type: 'boolean', short: 'q', default: false },
  help: { type: 'boolean', short: 'h', default: false },
  // Global options main.ts may leave in argv; they are applied there, not here.
  'data-dir': { type: 'string' },
  config: { type: 'string' },
} as const;

function parseRequest(argv: string[]): Request {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: OPTIONS,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  const base = { json: values.json!, quiet: values.quiet!, adaptive: values.adaptive! };
  if (values.help) return { ...base, help: true, inputs: [], attack: 'spsa-pgd', eps: 0, out: '' };

  if (!values.attack) throw new UsageError(`--attack is required (one of: ${ATTACK_NAMES.join(', ')})`);
  if (!isAttackName(values.attack)) throw new UsageError(`unknown attack '${values.attack}' (one of: ${ATTACK_NAMES.join(', ')})`);
  const attack = values.attack;
  if (positionals.length === 0) throw new UsageError('give at least one image file or folder to attack');
  if (!values.out) throw new UsageError('--out DIR is required (the folder the attacked images and manifest.json go to)');

  let eps = 0;
  if (usesEps(attack)) {
    if (values.eps === undefined) throw new UsageError(`--eps is required for '${attack}' (e.g. --eps 8/255)`);
    try {
      eps = parseEps(values.eps);
    } catch (err) {
      throw new UsageError(`--eps: ${(err as Error).message}`);
    }
  } else if (values.eps !== undefined) {
    // Accepted (so one command line can be re-used across attacks) but checked, and unused.
    try {
      eps = parseEps(values.eps);
    } catch (err) {
      throw new UsageError(`--eps: ${(err as Error).message}`);
    }
  }
  if (values.adaptive && !QUERY_ATTACKS.includes(attack)) {
    throw new UsageError(`--adaptive applies to attacks that query the encoder (${QUERY_ATTACKS.join(', ')}), not to '${attack}'`);
  }
  if (isTargeted(attack) && !values.target) {
    throw new UsageError(`'${attack}' needs --target FILE: the image whose embedding the attack pulls towards`);
  }
  if (values.palette !== undefined) {
    if (attack !== 'patch') throw new UsageError(`--palette applies to the patch attack, not to '${attack}'`);
    if (!(PATCH_PALETTES as readonly string[]).includes(values.palette)) throw new UsageError(`--palette must be one of ${PATCH_PALETTES.join(', ')}, got '${values.palette}'`);
  }
  return {
    ...base,
    help: false,
    inputs: positionals,
    attack,
    eps,
    out: path.resolve(values.out),
    target: values.target,
    steps: values.steps === undefined ? undefined : positiveInt(values.steps, '--steps'),
    samples: values.samples === undefined ? undefined : positiveInt(values.samples, '--samples'),
    seed: values.seed === undefined ? undefined : integer(values.seed, '--seed'),
    palette: values.palette as PatchPalette | undefined,
  };
}

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || !Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${flag} must be a positive integer, got '${text}'`);
  return n;
}

function integer(text: string, flag: string): number {
  const n = Number(text);
  if (!/^\s*-?\d+\s*$/.test(text) || !Number.isSafeInteger(n)) throw new UsageError(`${flag} must be an integer, got '${text}'`);
  return n;
}

function summary(m: RedteamManifest, out: string): string {
  const lines: string[] = [];
  const budget = m.eps_levels !== null ? ` at eps ${m.eps_levels}/255` : '';
  lines.push(`${m.attack}${budget}: ${m.items.length} images written to ${out} in ${m.seconds.toFixed(1)} s (encoder ${m.encoder_id})`);
  if (m.items.length > 0) {
    const shifts = m.items.map((i) => i.embedding_shift);
    const queries = m.items.map((i) => i.queries);
    lines.push(
      `embedding shift (cosine distance): median ${median(shifts).toFixed(3)}, min ${Math.min(...shifts).toFixed(3)}, max ${Math.max(...shifts).toFixed(3)}`,
    );
    lines.push(`L-inf (grey levels): max ${Math.max(...m.items.map((i) => i.linf))}; forward passes per image: median ${median(queries)}`);
    if (m.universal) lines.push(`universal δ: fitted on ${m.universal.fit_images} images with ${m.universal.fit_queries} forward passes -> ${m.universal.delta_json}`);
    const before = m.items.map((i) => i.target_similarity_before).filter((v): v is number => v !== undefined);
    const after = m.items.map((i) => i.target_similarity_after).filter((v): v is number => v !== undefined);
    if (before.length > 0) lines.push(`similarity to the target: median ${median(before).toFixed(3)} -> ${median(after).toFixed(3)}`);
  }
  for (const e of m.errors) lines.push(`error  ${e.source}: ${e.reason}`);
  lines.push(`manifest: ${path.join(out, 'manifest.json')}`);
  return `${lines.join('\n')}\n`;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

// ---------------------------------------------------------------------------------------------
// Audio attacks: WAV copies in --out with a manifest `parallax eval` reads like an image set.

async function audioRedteamCommand(
  argv: string[],
  ctx: RedteamCommandContext,
  stdout: Pick<NodeJS.WritableStream, 'write'>,
  stderr: NodeJS.WriteStream,
): Promise<number> {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: OPTIONS,
    }));
    if (values.help) {
      stdout.write(`${REDTEAM_USAGE}\n`);
      return 0;
    }
    if (values.target !== undefined) throw new UsageError('--target applies to spsa-pgd-targeted on images, not to audio attacks');
    if (values.adaptive) throw new UsageError('--adaptive applies to image attacks, not to audio attacks');
    if (values.palette !== undefined) throw new UsageError('--palette applies to the patch attack on images, not to audio attacks');
    if (positionals.length === 0) throw new UsageError('give at least one audio file or folder to attack');
    if (!values.out) throw new UsageError('--out DIR is required');
    if (values.eps !== undefined && !(Number(values.eps) > 0 && Number(values.eps) <= 1)) throw new UsageError(`--eps for audio attacks is in sample units, in (0, 1]; got '${values.eps}'`);
  } catch (err) {
    stderr.write(`parallax redteam: ${(err as Error).message}\n\n${REDTEAM_USAGE}\n`);
    return 2;
  }
  const attack = values.attack as (typeof AUDIO_ATTACKS)[number];
  const files: string[] = [];
  const errors: { source: string; reason: string }[] = [];
  for await (const entry of walkMedia(positionals)) {
    if (entry.error) errors.push({ source: entry.path, reason: entry.error });
    else files.push(entry.path);
  }
  const a = ctx.config.embedding_anomaly_detection.audio;
  const m = ctx.config.embedding_anomaly_detection.embedding_model;
  const encoder = await openAudioEncoder({ model: a.encoder === 'logmel' ? 'logmel' : a.clap_model_dir!, device: m.device, threads: m.threads });
  const progress = new ProgressBar(stderr, !values.quiet);
  try {
    const out = path.resolve(values.out!);
    const manifest = await runAudioRedteam({
      files,
      attack,
      out,
      encoder,
      eps: values.eps === undefined ? undefined : Number(values.eps),
      steps: values.steps === undefined ? undefined : positiveInt(values.steps, '--steps'),
      samples: values.samples === undefined ? undefined : positiveInt(values.samples, '--samples'),
      seed: values.seed === undefined ? undefined : integer(values.seed, '--seed'),
      errors,
      onProgress: (p) => progress.update(attack, p.done, p.total),
    });
    progress.done();
    if (values.json) stdout.write(`${JSON.stringify(manifest, null, 2)}\n`);
    else {
      const shifts = manifest.items.map((i) => i.embedding_shift);
      stdout.write(
        `${attack}: ${manifest.items.length} clips written to ${out} in ${manifest.seconds.toFixed(1)} s (encoder ${manifest.encoder_id})\n` +
          (shifts.length > 0 ? `embedding shift (cosine distance): median ${median(shifts).toFixed(4)}, max ${Math.max(...shifts).toFixed(4)}\n` : '') +
          manifest.errors.map((e) => `error  ${e.source}: ${e.reason}\n`).join('') +
          `manifest: ${path.join(out, 'manifest.json')}\n`,
      );
    }
    return manifest.errors.length > 0 ? 3 : 0;
  } finally {
    progress.done();
    await encoder.close();
  }
}
