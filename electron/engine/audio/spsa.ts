// A gradient-free attack on any AudioEncoder: L-inf PGD on SPSA gradient estimates (the audio
// twin of redteam/spsa.ts), pushing a clip's embedding away from where it was. It is how the
// audio path's detectors are tested against an adaptive perturbation, not a tool for attackers:
// the budget is in absolute sample units ([−1, 1] full scale), e.g. 0.01 ≈ −40 dBFS.
//
// Directions are ±1 constant over `tile` consecutive samples (a 2 ms tile at 16 kHz by
// default): a 10 s clip has 160,000 samples, and per-sample directions would need far more
// queries for the same progress. Sign steps with momentum, as in MI-FGSM.
import type { Rng } from '../../../shared/types.js';
import type { AudioEncoder } from './encoder.js';

export interface AudioSpsaOptions {
  /** L-inf budget in sample units. */
  eps: number;
  rng: Rng;
  steps?: number;
  /** Random directions per step; each costs two encoder calls. */
  samples?: number;
  /** Finite-difference half-width (default eps/2). */
  delta?: number;
  /** Samples per constant-direction tile (default 32). */
  tile?: number;
  momentum?: number;
}

export interface AudioAttackResult {
  clip: Float32Array;
  /** 1 − cos(embedding, clean embedding) of the returned clip. */
  distance: number;
  queries: number;
}

export async function spsaAudioAway(clean: Float32Array, encoder: AudioEncoder, opts: AudioSpsaOptions): Promise<AudioAttackResult> {
  const steps = opts.steps ?? 20;
  const samples = opts.samples ?? 8;
  const delta = opts.delta ?? opts.eps / 2;
  const tile = opts.tile ?? 32;
  const mu = opts.momentum ?? 0.75;
  const n = clean.length;
  const [ref] = await encoder.embedAudio([clean]);
  let queries = 1;
  const distance = (e: Float32Array) => {
    let dot = 0;
    for (let i = 0; i < e.length; i++) dot += e[i] * ref[i];
    return 1 - dot;
  };
  const clampToBall = (x: Float32Array): Float32Array => {
    for (let i = 0; i < n; i++) x[i] = Math.min(clean[i] + opts.eps, Math.max(clean[i] - opts.eps, Math.min(1, Math.max(-1, x[i]))));
    return x;
  };

  let x: Float32Array = new Float32Array(clean);
  let best = { clip: new Float32Array(clean), distance: 0 };
  const m = new Float64Array(n);
  const tiles = Math.ceil(n / tile);
  for (let s = 0; s < steps; s++) {
    const dirs: Int8Array[] = [];
    const probes: Float32Array[] = [];
    for (let j = 0; j < samples; j++) {
      const d = new Int8Array(tiles);
      for (let t = 0; t < tiles; t++) d[t] = opts.rng() < 0.5 ? -1 : 1;
      dirs.push(d);
      const plus = new Float32Array(n);
      const minus = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        plus[i] = x[i] + delta * d[(i / tile) | 0];
        minus[i] = x[i] - delta * d[(i / tile) | 0];
      }
      probes.push(plus, minus);
    }
    const emb = await encoder.embedAudio(probes);
    queries += probes.length;
    const g = new Float64Array(n);
    for (let j = 0; j < samples; j++) {
      const diff = (distance(emb[2 * j]) - distance(emb[2 * j + 1])) / (2 * delta);
      for (let i = 0; i < n; i++) g[i] += diff * dirs[j][(i / tile) | 0];
    }
    let l1 = 0;
    for (let i = 0; i < n; i++) l1 += Math.abs(g[i]);
    const step = (s < steps / 2 ? 0.5 : 0.25) * opts.eps;
    for (let i = 0; i < n; i++) {
      m[i] = mu * m[i] + (l1 > 0 ? (g[i] * n) / l1 : 0);
      x[i] += step * Math.sign(m[i]);
    }
    x = clampToBall(x);
    const [e] = await encoder.embedAudio([x]);
    queries++;
    const dist = distance(e);
    if (dist > best.distance) best = { clip: new Float32Array(x), distance: dist };
  }
  return { ...best, queries };
}
