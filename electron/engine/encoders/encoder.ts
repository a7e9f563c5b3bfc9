// The encoder seam: everything downstream (store, detectors, attacks) sees images only as
// fixed-length vectors from an ImageEncoder, and keys stored vectors by its `id`.
import { createHash } from 'node:crypto';

import { canonicalJson, type PreprocessingSpec } from './manifest.js';

export type { PreprocessingSpec } from './manifest.js';
export type { EncoderDevice, ExecutionProvider } from './providers.js';

export interface ImageEncoder {
  /** e.g. 'mobilenet_v2@<first 12 hex of sha256(onnx bytes + JSON of preprocessing spec)>' */
  readonly id: string;
  readonly modality: 'image';
  readonly dim: number;
  readonly inputSize: { width: number; height: number };
  /** Execution provider actually in use: 'cpu' | 'webgpu' | 'cuda'. */
  readonly provider: string;
  /** Why that provider (e.g. "auto: webgpu unavailable (no adapter found), using cpu"). */
  readonly providerNote: string;
  /** pixels: float32 NHWC in [0,1], n images at inputSize. Returns n L2-normalised embeddings. */
  embedPixels(pixels: Float32Array, n: number): Promise<Float32Array[]>;
  /** Same as embedPixels but returns the raw (un-normalised) features, for parity tests and attacks. */
  rawFeatures(pixels: Float32Array, n: number): Promise<Float32Array[]>;
  close(): Promise<void>;
}

/**
 * Encoder id: name + a digest of everything that determines the vectors, i.e. the network
 * (its exact .onnx bytes) and how pixels are prepared for it. Embeddings stored under one id
 * are comparable; any change to either part yields a new id, so stale vectors are never mixed in.
 */
export function encoderId(name: string, onnxBytes: Uint8Array, preprocessing: PreprocessingSpec): string {
  const digest = createHash('sha256').update(onnxBytes).update(canonicalJson(preprocessing)).digest('hex');
  return `${name}@${digest.slice(0, 12)}`;
}

/** Returns a unit-length copy of `v`; an all-zero vector stays all zero (it has no direction). */
export function l2Normalised(v: Float32Array): Float32Array {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += v[i] * v[i];
  const out = new Float32Array(v);
  if (sum === 0) return out;
  const inv = 1 / Math.sqrt(sum);
  for (let i = 0; i < out.length; i++) out[i] *= inv;
  return out;
}
