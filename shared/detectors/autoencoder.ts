// A one-hidden-layer autoencoder d → h → d, trained in-process. Items the baseline's manifold
// explains reconstruct well; items off that manifold do not, so the reconstruction error is
// the anomaly score. Forward and backward passes are written out by hand as NT matrix
// products (see math/matrix.ts) over Float32Array buffers allocated once per fit.

import type { Detector, DetectorState, Rng } from '../types.js';
import { base64ToFloat32, float32ToBase64 } from '../math/base64.js';
import { gemmNT } from '../math/matrix.js';
import { normal, permutation, shuffle, uniform } from '../math/rng.js';
import { checkEmbeddings } from '../math/vector.js';
import { checkState, enumParam, field, intParam, notFitted, numberParam, rejectUnknown } from './params.js';

const NAME = 'autoencoder';

export type Activation = 'tanh' | 'relu';

export interface AutoencoderParams {
  hidden: number;
  activation: Activation;
  epochs: number;
  batchSize: number;
  learningRate: number;
  /** Share of the baseline held out to pick the best epoch; 0 trains on everything for `epochs`. */
  validationFraction: number;
  /** Epochs without validation improvement before stopping; 0 never stops early. */
  patience: number;
}

export const AUTOENCODER_DEFAULTS: AutoencoderParams = {
  hidden: 64,
  activation: 'tanh',
  epochs: 30,
  batchSize: 32,
  learningRate: 1e-3,
  validationFraction: 0.1,
  patience: 5,
};

const ADAM_BETA1 = 0.9;
const ADAM_BETA2 = 0.999;
const ADAM_EPSILON = 1e-8;
/** Below this many held-out items a validation loss is too noisy to stop on. */
const MIN_VALIDATION_ITEMS = 5;

interface Weights {
  /** Encoder, h×d. */
  w1: Float32Array;
  b1: Float32Array;
  /** Decoder, stored d×h so the forward pass is an NT product. */
  w2: Float32Array;
  b2: Float32Array;
}

interface Model extends Weights {
  dim: number;
  /** Per-dimension mean and one global scale: x' = (x − mean) / scale. */
  mean: Float32Array;
  scale: number;
  lossHistory: number[];
  validationLossHistory: number[];
  bestEpoch: number;
}

export class AutoencoderDetector implements Detector {
  readonly name = NAME;
  readonly version = '1';
  readonly params: AutoencoderParams;
  private model: Model | null = null;

  constructor(params: Partial<AutoencoderParams> = {}) {
    rejectUnknown(NAME, params, Object.keys(AUTOENCODER_DEFAULTS));
    this.params = {
      hidden: intParam(NAME, params, 'hidden', AUTOENCODER_DEFAULTS.hidden, 1, 4096),
      activation: enumParam(NAME, params, 'activation', AUTOENCODER_DEFAULTS.activation, ['tanh', 'relu']),
      epochs: intParam(NAME, params, 'epochs', AUTOENCODER_DEFAULTS.epochs, 1, 10_000),
      batchSize: intParam(NAME, params, 'batchSize', AUTOENCODER_DEFAULTS.batchSize, 1, 65_536),
      learningRate: numberParam(NAME, params, 'learningRate', AUTOENCODER_DEFAULTS.learningRate, 0, 1, true),
      validationFraction: numberParam(NAME, params, 'validationFraction', AUTOENCODER_DEFAULTS.validationFraction, 0, 0.5),
      patience: intParam(NAME, params, 'patience', AUTOENCODER_DEFAULTS.patience, 0, 10_000),
    };
  }

  /** Mean training loss per epoch (standardised units), for inspection. */
  get lossHistory(): readonly number[] {
    return this.model?.lossHistory ?? [];
  }

  get validationLossHistory(): readonly number[] {
    return this.model?.validationLossHistory ?? [];
  }

  fit(X: readonly Float32Array[], rng: Rng): void {
    const dim = checkEmbeddings(X, undefined, NAME);
    const n = X.length;
    if (n < 2) throw new RangeError(`${NAME}: needs at least 2 items, got ${n}`);
    const { mean, scale } = standardisation(X, dim);
    const data = new Float32Array(n * dim);
    for (let r = 0; r < n; r++) standardiseInto(X[r], mean, scale, data, r * dim);

    const order = permutation(n, rng);
    const wantVal = Math.round(n * this.params.validationFraction);
    const nVal = wantVal >= MIN_VALIDATION_ITEMS && n - wantVal >= 2 ? wantVal : 0;
    const valRows = order.slice(0, nVal);
    const trainRows = order.slice(nVal);

    const trainer = new Trainer(dim, this.params, rng);
    const lossHistory: number[] = [];
    const validationLossHistory: number[] = [];
    let best: Weights | null = null;
    let bestLoss = Infinity;
    let bestEpoch = -1;
    for (let epoch = 0; epoch < this.params.epochs; epoch++) {
      lossHistory.push(trainer.epoch(data, shuffle(trainRows, rng)));
      if (nVal === 0) continue;
      const valLoss = mean1(trainer.reconstructionErrors(data, valRows));
      validationLossHistory.push(valLoss);
      if (valLoss < bestLoss) {
        bestLoss = valLoss;
        bestEpoch = epoch;
        best = trainer.snapshot();
      } else if (this.params.patience > 0 && epoch - bestEpoch >= this.params.patience) {
        break;
      }
    }
    const weights = best ?? trainer.snapshot();
    this.model = {
      dim, mean, scale, ...weights,
      lossHistory, validationLossHistory,
      bestEpoch: nVal === 0 ? lossHistory.length - 1 : bestEpoch,
    };
  }

  /** Reconstruction MSE in standardised units (1.0 ≈ no better than predicting the mean). */
  score(X: readonly Float32Array[]): number[] {
    const m = this.model;
    if (!m) throw notFitted(NAME);
    checkEmbeddings(X, m.dim, `${NAME}.score`);
    const data = new Float32Array(X.length * m.dim);
    for (let r = 0; r < X.length; r++) standardiseInto(X[r], m.mean, m.scale, data, r * m.dim);
    const rows = new Int32Array(X.length);
    for (let r = 0; r < X.length; r++) rows[r] = r;
    const forward = new Forward(m.dim, this.params.hidden, this.params.activation, Math.max(1, Math.min(64, X.length)));
    return Array.from(forward.errors(m, data, rows));
  }

  toJSON(): DetectorState {
    const m = this.model;
    if (!m) throw notFitted(NAME);
    return {
      name: NAME,
      version: this.version,
      params: { ...this.params },
      state: {
        dim: m.dim,
        scale: m.scale,
        mean: float32ToBase64(m.mean),
        w1: float32ToBase64(m.w1),
        b1: float32ToBase64(m.b1),
        w2: float32ToBase64(m.w2),
        b2: float32ToBase64(m.b2),
        lossHistory: m.lossHistory,
        validationLossHistory: m.validationLossHistory,
        bestEpoch: m.bestEpoch,
      },
    };
  }

  static fromJSON(state: DetectorState): AutoencoderDetector {
    const det = new AutoencoderDetector(state.params as Partial<AutoencoderParams>);
    checkState(state, NAME, det.version);
    const s = state.state;
    const dim = field<number>(s, 'dim', 'number', NAME);
    const h = det.params.hidden;
    const model: Model = {
      dim,
      scale: field<number>(s, 'scale', 'number', NAME),
      mean: base64ToFloat32(field<string>(s, 'mean', 'string', NAME)),
      w1: base64ToFloat32(field<string>(s, 'w1', 'string', NAME)),
      b1: base64ToFloat32(field<string>(s, 'b1', 'string', NAME)),
      w2: base64ToFloat32(field<string>(s, 'w2', 'string', NAME)),
      b2: base64ToFloat32(field<string>(s, 'b2', 'string', NAME)),
      lossHistory: (s.lossHistory as number[] | undefined) ?? [],
      validationLossHistory: (s.validationLossHistory as number[] | undefined) ?? [],
      bestEpoch: (s.bestEpoch as number | undefined) ?? -1,
    };
    if (model.mean.length !== dim || model.w1.length !== h * dim || model.b1.length !== h || model.w2.length !== dim * h || model.b2.length !== dim) {
      throw new RangeError(`${NAME}: weight shapes do not match dim=${dim}, hidden=${h}`);
    }
    det.model = model;
    return det;
  }
}

/**
 * Embeddings are unit vectors, so each coordinate is ~1/√d ≈ 0.03: far from the O(1) scale
 * that Xavier/He init and Adam's default step assume. One global scale (not per-dimension,
 * which would blow up near-constant dimensions into noise) brings them to unit variance.
 */
function standardisation(X: readonly Float32Array[], dim: number): { mean: Float32Array; scale: number } {
  const acc = new Float64Array(dim);
  for (const x of X) for (let i = 0; i < dim; i++) acc[i] += x[i];
  const mean = new Float32Array(dim);
  for (let i = 0; i < dim; i++) mean[i] = acc[i] / X.length;
  let ss = 0;
  for (const x of X) {
    for (let i = 0; i < dim; i++) {
      const d = x[i] - mean[i];
      ss += d * d;
    }
  }
  const rms = Math.sqrt(ss / (X.length * dim));
  return { mean, scale: rms > 1e-12 ? rms : 1 };
}

function standardiseInto(x: ArrayLike<number>, mean: Float32Array, scale: number, out: Float32Array, offset: number): void {
  const inv = 1 / scale;
  for (let i = 0; i < mean.length; i++) out[offset + i] = (x[i] - mean[i]) * inv;
}

function mean1(values: Float64Array): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i];
  return values.length ? s / values.length : 0;
}

/** Forward pass over blocks of rows; owns its activation buffers. */
class Forward {
  readonly xb: Float32Array;
  readonly pre: Float32Array;
  readonly hid: Float32Array;
  readonly out: Float32Array;

  constructor(readonly dim: number, readonly hidden: number, readonly activation: Activation, readonly block: number) {
    this.xb = new Float32Array(block * dim);
    this.pre = new Float32Array(block * hidden);
    this.hid = new Float32Array(block * hidden);
    this.out = new Float32Array(block * dim);
  }

  /** Gathers `rows` of `data` into the batch buffer and runs encoder and decoder on them. */
  run(w: Weights, data: Float32Array, rows: ArrayLike<number>, start: number, m: number): void {
    const { dim: d, hidden: h, xb, pre, hid, out } = this;
    for (let b = 0; b < m; b++) xb.set(data.subarray(rows[start + b] * d, (rows[start + b] + 1) * d), b * d);
    gemmNT(xb, w.w1, pre, m, h, d);
    const relu = this.activation === 'relu';
    for (let b = 0; b < m; b++) {
      for (let j = 0; j < h; j++) {
        const v = pre[b * h + j] + w.b1[j];
        pre[b * h + j] = v;
        hid[b * h + j] = relu ? (v > 0 ? v : 0) : Math.tanh(v);
      }
    }
    gemmNT(hid, w.w2, out, m, d, h);
    for (let b = 0; b < m; b++) {
      for (let i = 0; i < d; i++) out[b * d + i] += w.b2[i];
    }
  }

  /** Per-row reconstruction MSE of the given rows. */
  errors(w: Weights, data: Float32Array, rows: ArrayLike<number>): Float64Array {
    const d = this.dim;
    const errs = new Float64Array(rows.length);
    for (let start = 0; start < rows.length; start += this.block) {
      const m = Math.min(this.block, rows.length - start);
      this.run(w, data, rows, start, m);
      for (let b = 0; b < m; b++) {
        let s = 0;
        for (let i = 0; i < d; i++) {
          const e = this.out[b * d + i] - this.xb[b * d + i];
          s += e * e;
        }
        errs[start + b] = s / d;
      }
    }
    return errs;
  }
}

/** Mini-batch Adam on the MSE; every buffer is allocated here once and reused per batch. */
class Trainer {
  private readonly w: Weights;
  private readonly forward: Forward;
  private readonly adamM: Weights;
  private readonly adamV: Weights;
  private step = 0;
  // Gradients and the transposed copies the NT products need.
  private readonly gW1: Float32Array;
  private readonly gB1: Float64Array;
  private readonly gW2: Float32Array;
  private readonly gB2: Float64Array;
  private readonly w2t: Float32Array;
  private readonly xbT: Float32Array;
  private readonly hidT: Float32Array;
  private readonly dOut: Float32Array;
  private readonly dOutT: Float32Array;
  private readonly dHid: Float32Array;
  private readonly dPreT: Float32Array;

  constructor(private readonly dim: number, private readonly params: AutoencoderParams, rng: Rng) {
    const d = dim, h = params.hidden, B = params.batchSize;
    this.w = initialWeights(d, h, params.activation, rng);
    this.forward = new Forward(d, h, params.activation, B);
    this.adamM = zerosLike(this.w);
    this.adamV = zerosLike(this.w);
    this.gW1 = new Float32Array(h * d);
    this.gB1 = new Float64Array(h);
    this.gW2 = new Float32Array(d * h);
    this.gB2 = new Float64Array(d);
    this.w2t = new Float32Array(h * d);
    this.xbT = new Float32Array(d * B);
    this.hidT = new Float32Array(h * B);
    this.dOut = new Float32Array(B * d);
    this.dOutT = new Float32Array(d * B);
    this.dHid = new Float32Array(B * h);
    this.dPreT = new Float32Array(h * B);
    this.refreshDecoderTranspose();
  }

  /** One pass over `rows` in their given order; returns the mean per-element training loss. */
  epoch(data: Float32Array, rows: Int32Array): number {
    const B = this.params.batchSize;
    let total = 0;
    for (let start = 0; start < rows.length; start += B) {
      const m = Math.min(B, rows.length - start);
      total += this.batch(data, rows, start, m) * m;
    }
    return total / rows.length;
  }

  reconstructionErrors(data: Float32Array, rows: Int32Array): Float64Array {
    return this.forward.errors(this.w, data, rows);
  }

  snapshot(): Weights {
    return { w1: this.w.w1.slice(), b1: this.w.b1.slice(), w2: this.w.w2.slice(), b2: this.w.b2.slice() };
  }

  private batch(data: Float32Array, rows: Int32Array, start: number, m: number): number {
    const d = this.dim, h = this.params.hidden;
    const f = this.forward;
    f.run(this.w, data, rows, start, m);
    const { xb, pre, hid, out } = f;
    const { dOut, dOutT, xbT, hidT, dHid, dPreT, gW1, gB1, gW2, gB2 } = this;

    // Loss = mean over the m×d entries of (out − x)², so dL/dout = 2(out − x)/(m·d).
    let loss = 0;
    const g = 2 / (m * d);
    // Column-major walk: the m rows being read stay in L1 while the transposes are written
    // contiguously (the row-major walk would scatter writes over d cache lines per row).
    for (let i = 0; i < d; i++) {
      let colSum = 0;
      for (let b = 0; b < m; b++) {
        const x = xb[b * d + i];
        const e = out[b * d + i] - x;
        loss += e * e;
        const de = g * e;
        dOut[b * d + i] = de;
        dOutT[i * m + b] = de;
        xbT[i * m + b] = x;
        colSum += de;
      }
      gB2[i] = colSum;
    }
    for (let b = 0; b < m; b++) {
      for (let j = 0; j < h; j++) hidT[j * m + b] = hid[b * h + j];
    }

    // Decoder: gW2 (d×h) = dOutᵀ·hid; back into the hidden layer: dHid (m×h) = dOut·W2.
    gemmNT(dOutT, hidT, gW2, d, h, m);
    gemmNT(dOut, this.w2t, dHid, m, h, d);

    const relu = this.params.activation === 'relu';
    gB1.fill(0);
    for (let b = 0; b < m; b++) {
      for (let j = 0; j < h; j++) {
        const a = hid[b * h + j];
        const dp = dHid[b * h + j] * (relu ? (pre[b * h + j] > 0 ? 1 : 0) : 1 - a * a);
        dPreT[j * m + b] = dp;
        gB1[j] += dp;
      }
    }
    // Encoder: gW1 (h×d) = dPreᵀ·x.
    gemmNT(dPreT, xbT, gW1, h, d, m);

    this.step++;
    const lr = this.params.learningRate;
    const c1 = 1 - Math.pow(ADAM_BETA1, this.step);
    const c2 = 1 - Math.pow(ADAM_BETA2, this.step);
    adam(this.w.w1, gW1, this.adamM.w1, this.adamV.w1, lr, c1, c2);
    adam(this.w.b1, gB1, this.adamM.b1, this.adamV.b1, lr, c1, c2);
    adam(this.w.w2, gW2, this.adamM.w2, this.adamV.w2, lr, c1, c2);
    adam(this.w.b2, gB2, this.adamM.b2, this.adamV.b2, lr, c1, c2);
    this.refreshDecoderTranspose();
    return loss / (m * d);
  }

  private refreshDecoderTranspose(): void {
    const d = this.dim, h = this.params.hidden, w2 = this.w.w2, t = this.w2t;
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < h; j++) t[j * d + i] = w2[i * h + j];
    }
  }
}

function adam(param: Float32Array, grad: ArrayLike<number>, m: Float32Array, v: Float32Array, lr: number, c1: number, c2: number): void {
  for (let i = 0; i < param.length; i++) {
    const gi = grad[i];
    const mi = ADAM_BETA1 * m[i] + (1 - ADAM_BETA1) * gi;
    const vi = ADAM_BETA2 * v[i] + (1 - ADAM_BETA2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    param[i] -= (lr * (mi / c1)) / (Math.sqrt(vi / c2) + ADAM_EPSILON);
  }
}

/** Xavier-uniform for tanh (keeps activations out of saturation), He-normal for ReLU; biases 0. */
function initialWeights(d: number, h: number, activation: Activation, rng: Rng): Weights {
  const w1 = new Float32Array(h * d);
  if (activation === 'relu') {
    const s = Math.sqrt(2 / d);
    for (let i = 0; i < w1.length; i++) w1[i] = normal(rng, 0, s);
  } else {
    const a = Math.sqrt(6 / (d + h));
    for (let i = 0; i < w1.length; i++) w1[i] = uniform(rng, -a, a);
  }
  // The decoder is linear, so Xavier suits it in both cases.
  const w2 = new Float32Array(d * h);
  const a2 = Math.sqrt(6 / (d + h));
  for (let i = 0; i < w2.length; i++) w2[i] = uniform(rng, -a2, a2);
  return { w1, b1: new Float32Array(h), w2, b2: new Float32Array(d) };
}

function zerosLike(w: Weights): Weights {
  return {
    w1: new Float32Array(w.w1.length),
    b1: new Float32Array(w.b1.length),
    w2: new Float32Array(w.w2.length),
    b2: new Float32Array(w.b2.length),
  };
}
