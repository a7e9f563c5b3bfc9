// Temporal consistency of a video in embedding space: does one frame (or one cut) stand out
// from how the rest of the video moves?
//
// For unit frame embeddings e_1..e_n in time order:
//   jump       j_i = 1 − cos(e_i, e_{i+1})                         (i = 1..n−1)
//   isolation  a_i = 1 − cos(e_i, (e_{i−1} + e_{i+1}) / ‖·‖)       (interior frames)
//              A doctored frame is far from BOTH neighbours while they stay close to each
//              other, so a_i ≈ the full jump; at a genuine cut the frame sits on one side
//              and a_i is about half the jump. Isolation therefore tells a single odd frame
//              from a splice, and the jump catches the splice.
//   relative   r^J_i = j_i / max(median_video(j), floor_J),  r^A_i = a_i / max(median_video(a), floor_A)
//              "how much it stands out against this video's own motion"; the floors (half the
//              pooled baseline medians) stop near-static videos from dividing by ~0.
//   triplet excess, for each frame the pixel screen picked (sample.ts), with its two ADJACENT
//              frames b−1, b+1 (tens of ms apart): with θ the angle between unit embeddings,
//              x_b = min(θ(b−1,b), θ(b,b+1)) − ½·θ(b−1,b+1).
//              Along smooth motion the middle frame lies on the way (θ in ≈ θ out ≈ ½θ skip,
//              x ≈ 0); at a cut it sits with one side (min ≈ 0, x < 0); a doctored frame is away
//              from both while they agree (x ≈ the perturbation's angle). The grid alone is too
//              coarse for this: at 2 fps its neighbours are half a second away.
// Calibration (calibrateTemporal), on baseline videos: every grid frame's r^J, r^A and j, and
// every screened triplet's x, pooled over all videos (the 12 shared videos give ~250 grid values and ~50 triplets where
// per-video maxima would give only 12), each through the shared Calibrator (empirical body,
// exponential tail). A video's statistic is its maximum, so its p-value is the frame-level p
// corrected for the number of frames looked at (Šidák: p_video = 1 − (1 − p)^m). The p-values
// are combined with Bonferroni (p = min(1, k·min p), k = tests run), and risk uses the
// engine's surprise scale min(1, −log10(p)/4), so the 0.4 / 0.7 thresholds mean what they mean
// for images (≈ 1 in 40 / 1 in 630 clean videos).
import { Calibrator, type CalibratorState } from '../../../shared/detectors/calibration.js';
import type { Decision } from '../../../shared/types.js';
import type { SampledFrame } from './sample.js';

export interface TemporalStats {
  jumps: number[];
  /** Per frame; null at the two ends (one neighbour only). */
  isolation: (number | null)[];
  relativeJump: number[];
  relativeIsolation: (number | null)[];
  medianJump: number;
  medianIsolation: number;
}

export interface TemporalCalibrationState {
  kind: 'parallax.video-temporal';
  version: 1;
  encoderId: string;
  videos: number;
  frames: number;
  floorJump: number;
  floorIsolation: number;
  relativeJump: CalibratorState;
  relativeIsolation: CalibratorState;
  jump: CalibratorState;
  /** Null when no baseline video was screened (all too long): the triplet test is then skipped. */
  excess: CalibratorState | null;
}

export interface FrameDriver {
  /** Position among the sampled frames. */
  sample: number;
  sourceFrame: number;
  timeS: number;
  isolation: number | null;
  relativeIsolation: number | null;
  /** Jump from the previous sampled frame, and to the next. */
  jumpIn: number | null;
  jumpOut: number | null;
  /** Triplet excess (radians) when the frame was a screened spike. */
  excess: number | null;
  why: string;
}

export interface TemporalVerdict {
  decision: Decision;
  risk: number;
  p: number;
  pValues: { relativeJump: number; relativeIsolation: number; jump: number; excess: number | null };
  maxJump: number;
  maxRelativeJump: number;
  maxRelativeIsolation: number;
  /** Largest triplet excess (radians), null when no triplet was screened. */
  maxExcess: number | null;
  frames: number;
  /** The frames that drove the verdict, most anomalous first (at most 3). */
  drivers: FrameDriver[];
  note?: string;
}

export const MIN_TEMPORAL_FRAMES = 3;
/** Floors of the relative statistics, as a share of the pooled baseline medians. */
const FLOOR_SHARE = 0.5;

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function median(v: readonly number[]): number {
  if (v.length === 0) return 0;
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export function temporalStats(embeddings: readonly Float32Array[], floors: { jump: number; isolation: number } = { jump: 1e-4, isolation: 1e-4 }): TemporalStats {
  const n = embeddings.length;
  if (n < MIN_TEMPORAL_FRAMES) throw new RangeError(`temporal consistency needs at least ${MIN_TEMPORAL_FRAMES} frames, got ${n}`);
  const jumps: number[] = [];
  for (let i = 0; i + 1 < n; i++) jumps.push(Math.max(0, 1 - dot(embeddings[i], embeddings[i + 1])));
  const isolation: (number | null)[] = [null];
  for (let i = 1; i + 1 < n; i++) {
    const a = embeddings[i - 1];
    const c = embeddings[i + 1];
    let norm = 0;
    let d = 0;
    for (let k = 0; k < a.length; k++) {
      const m = a[k] + c[k];
      norm += m * m;
      d += embeddings[i][k] * m;
    }
    isolation.push(norm > 0 ? Math.max(0, 1 - d / Math.sqrt(norm)) : 1);
  }
  isolation.push(null);
  const interior = isolation.filter((x): x is number => x !== null);
  const medianJump = median(jumps);
  const medianIsolation = median(interior);
  const sJ = Math.max(medianJump, floors.jump);
  const sA = Math.max(medianIsolation, floors.isolation);
  return {
    jumps,
    isolation,
    relativeJump: jumps.map((j) => j / sJ),
    relativeIsolation: isolation.map((a) => (a === null ? null : a / sA)),
    medianJump,
    medianIsolation,
  };
}

export interface FrameSeries {
  /** Unit embeddings, one per sampled frame, time order. */
  embeddings: readonly Float32Array[];
  frames: readonly SampledFrame[];
}

/** The grid frames of a series (the uniform sample the jump statistics are defined on). */
function gridOf(series: FrameSeries): { embeddings: Float32Array[]; index: number[] } {
  const index = series.frames.map((f, i) => (f.grid ? i : -1)).filter((i) => i >= 0);
  return { embeddings: index.map((i) => series.embeddings[i]), index };
}

function angle(a: Float32Array, b: Float32Array): number {
  return Math.acos(Math.max(-1, Math.min(1, dot(a, b))));
}

/** Triplet excess of every screened spike frame whose two adjacent frames were sampled. */
export function tripletExcess(series: FrameSeries): { sample: number; excess: number }[] {
  const bySource = new Map(series.frames.map((f, i) => [f.sourceFrame, i]));
  const out: { sample: number; excess: number }[] = [];
  series.frames.forEach((f, i) => {
    if (!f.spikeCentre) return;
    const before = bySource.get(f.sourceFrame - 1);
    const after = bySource.get(f.sourceFrame + 1);
    if (before === undefined || after === undefined) return;
    const [a, b, c] = [series.embeddings[before], series.embeddings[i], series.embeddings[after]];
    out.push({ sample: i, excess: Math.min(angle(a, b), angle(b, c)) - 0.5 * angle(a, c) });
  });
  return out;
}

/** Fits the calibration on baseline videos (each: frames sampled by sample.ts, embedded in order). */
export function calibrateTemporal(encoderId: string, videos: readonly FrameSeries[]): TemporalCalibrationState {
  const grids = videos.map(gridOf).filter((g) => g.embeddings.length >= MIN_TEMPORAL_FRAMES);
  if (grids.length < 3) throw new RangeError(`temporal calibration needs at least 3 baseline videos with ≥ ${MIN_TEMPORAL_FRAMES} grid frames, got ${grids.length}`);
  // Floors from the pooled medians first, so every video's relatives use the same floors.
  const raw = grids.map((g) => temporalStats(g.embeddings));
  const floorJump = Math.max(1e-4, FLOOR_SHARE * median(raw.flatMap((s) => s.jumps)));
  const floorIsolation = Math.max(1e-4, FLOOR_SHARE * median(raw.flatMap((s) => s.isolation.filter((x): x is number => x !== null))));
  const stats = grids.map((g) => temporalStats(g.embeddings, { jump: floorJump, isolation: floorIsolation }));
  const excess = videos.flatMap((v) => tripletExcess(v).map((t) => t.excess));
  return {
    kind: 'parallax.video-temporal',
    version: 1,
    encoderId,
    videos: grids.length,
    frames: videos.reduce((a, v) => a + v.embeddings.length, 0),
    floorJump,
    floorIsolation,
    relativeJump: Calibrator.fit(stats.flatMap((s) => s.relativeJump)).toJSON(),
    relativeIsolation: Calibrator.fit(stats.flatMap((s) => s.relativeIsolation.filter((x): x is number => x !== null))).toJSON(),
    jump: Calibrator.fit(stats.flatMap((s) => s.jumps)).toJSON(),
    excess: excess.length >= 5 ? Calibrator.fit(excess).toJSON() : null,
  };
}

/** p of the maximum of m frame statistics, each with frame-level p: 1 − (1 − p)^m, computed stably. */
export function sidak(p: number, m: number): number {
  if (m <= 1) return p;
  return Math.min(1, -Math.expm1(m * Math.log1p(-Math.min(p, 1 - 1e-16))));
}

export class TemporalModel {
  private readonly relJ: Calibrator;
  private readonly relA: Calibrator;
  private readonly jump: Calibrator;
  private readonly excess: Calibrator | null;

  constructor(readonly state: TemporalCalibrationState) {
    if (state?.kind !== 'parallax.video-temporal' || state.version !== 1) throw new RangeError('not a video temporal calibration (kind/version)');
    this.relJ = Calibrator.fromJSON(state.relativeJump);
    this.relA = Calibrator.fromJSON(state.relativeIsolation);
    this.jump = Calibrator.fromJSON(state.jump);
    this.excess = state.excess ? Calibrator.fromJSON(state.excess) : null;
  }

  score(series: FrameSeries, encoderId: string, thresholds: { review: number; block: number } = { review: 0.4, block: 0.7 }): TemporalVerdict {
    if (encoderId !== this.state.encoderId) {
      throw new Error(`temporal calibration was made with encoder ${this.state.encoderId}, cannot score embeddings from ${encoderId}`);
    }
    if (series.frames.length !== series.embeddings.length) throw new RangeError(`${series.embeddings.length} embeddings but ${series.frames.length} frames`);
    const grid = gridOf(series);
    const triplets = this.excess ? tripletExcess(series) : [];
    if (grid.embeddings.length < MIN_TEMPORAL_FRAMES && triplets.length === 0) {
      return {
        decision: 'allow', risk: 0, p: 1, pValues: { relativeJump: 1, relativeIsolation: 1, jump: 1, excess: null },
        maxJump: 0, maxRelativeJump: 0, maxRelativeIsolation: 0, maxExcess: null, frames: series.embeddings.length, drivers: [],
        note: `only ${grid.embeddings.length} grid frame(s) and no screened frame: temporal consistency needs ${MIN_TEMPORAL_FRAMES}`,
      };
    }
    const tests: number[] = [];
    const candidates: { p: number; driver: FrameDriver }[] = [];
    let maxJump = 0;
    let maxRelJ = 0;
    let maxRelA = 0;
    const pValues: TemporalVerdict['pValues'] = { relativeJump: 1, relativeIsolation: 1, jump: 1, excess: null };
    const s = grid.embeddings.length >= MIN_TEMPORAL_FRAMES ? temporalStats(grid.embeddings, { jump: this.state.floorJump, isolation: this.state.floorIsolation }) : null;
    if (s) {
      const relIso = s.relativeIsolation.filter((x): x is number => x !== null);
      maxRelJ = Math.max(...s.relativeJump);
      maxRelA = Math.max(...relIso);
      maxJump = Math.max(...s.jumps);
      pValues.relativeJump = sidak(this.relJ.p(maxRelJ), s.jumps.length);
      pValues.relativeIsolation = sidak(this.relA.p(maxRelA), relIso.length);
      pValues.jump = sidak(this.jump.p(maxJump), s.jumps.length);
      tests.push(pValues.relativeJump, pValues.relativeIsolation, pValues.jump);
      const g = s.relativeIsolation.indexOf(maxRelA);
      candidates.push({ p: pValues.relativeIsolation, driver: driver(series, grid.index[g], s, g, null, `${maxRelA.toFixed(1)}× this video's median distance from its neighbours`) });
      const j = s.relativeJump.indexOf(maxRelJ);
      const pj = Math.min(pValues.relativeJump, pValues.jump);
      candidates.push({ p: pj, driver: driver(series, grid.index[j], s, j, null, `${maxRelJ.toFixed(1)}× this video's median jump follows this frame`) });
      candidates.push({ p: pj, driver: driver(series, grid.index[j + 1], s, j + 1, null, `${maxRelJ.toFixed(1)}× this video's median jump precedes this frame`) });
    }
    let maxExcess: number | null = null;
    if (this.excess && triplets.length > 0) {
      const top = triplets.reduce((a, b) => (b.excess > a.excess ? b : a));
      maxExcess = top.excess;
      pValues.excess = sidak(this.excess.p(top.excess), triplets.length);
      tests.push(pValues.excess);
      for (const t of triplets) {
        candidates.push({
          p: sidak(this.excess.p(t.excess), triplets.length),
          driver: driver(series, t.sample, null, -1, t.excess, `${t.excess.toFixed(3)} rad away from both adjacent frames, which agree with each other`),
        });
      }
    }
    const p = Math.min(1, tests.length * Math.min(...tests));
    const risk = Math.min(1, -Math.log10(Math.max(p, 1e-300)) / 4);
    const decision: Decision = risk >= thresholds.block ? 'block' : risk >= thresholds.review ? 'review' : 'allow';
    candidates.sort((a, b) => a.p - b.p);
    const drivers: FrameDriver[] = [];
    for (const c of candidates) if (drivers.length < 3 && !drivers.some((d) => d.sample === c.driver.sample)) drivers.push(c.driver);
    return { decision, risk, p, pValues, maxJump, maxRelativeJump: maxRelJ, maxRelativeIsolation: maxRelA, maxExcess, frames: series.embeddings.length, drivers };
  }
}

function driver(series: FrameSeries, sample: number, s: TemporalStats | null, g: number, excess: number | null, why: string): FrameDriver {
  const f = series.frames[sample];
  return {
    sample,
    sourceFrame: f.sourceFrame,
    timeS: f.timeS,
    isolation: s && g >= 0 ? s.isolation[g] : null,
    relativeIsolation: s && g >= 0 ? s.relativeIsolation[g] : null,
    jumpIn: s && g > 0 ? s.jumps[g - 1] : null,
    jumpOut: s && g >= 0 && g < s.jumps.length ? s.jumps[g] : null,
    excess,
    why,
  };
}
