// The autoencoder signal as a standalone ONNX model, so an exported detector set can be run
// by any ONNX runtime: embedding → standardise → Gemm → tanh/relu → Gemm → reconstruction,
// plus the per-item reconstruction MSE that is the signal's raw score.
import type { DetectorSet } from '../../../shared/detectors/detector-set.js';
import { base64ToFloat32 } from '../../../shared/math/base64.js';
import { attr, encodeOnnxModel, type OnnxModel } from '../encoders/onnx-proto.js';
import { ENGINE_VERSION } from '../version.js';

export interface AutoencoderWeights {
  dim: number;
  hidden: number;
  activation: 'tanh' | 'relu';
  mean: Float32Array;
  scale: number;
  w1: Float32Array;
  b1: Float32Array;
  w2: Float32Array;
  b2: Float32Array;
}

export function autoencoderWeights(set: DetectorSet): AutoencoderWeights | null {
  const det = set.detectors.autoencoder;
  if (!det) return null;
  const json = det.toJSON();
  const s = json.state as { dim: number; scale: number; mean: string; w1: string; b1: string; w2: string; b2: string };
  const p = json.params as { hidden: number; activation: 'tanh' | 'relu' };
  return {
    dim: s.dim,
    hidden: p.hidden,
    activation: p.activation,
    mean: base64ToFloat32(s.mean),
    scale: s.scale,
    w1: base64ToFloat32(s.w1),
    b1: base64ToFloat32(s.b1),
    w2: base64ToFloat32(s.w2),
    b2: base64ToFloat32(s.b2),
  };
}

/** Inputs: `embedding` [N, dim]. Outputs: `reconstruction_error` [N], `reconstruction` [N, dim] (standardised units). */
export function autoencoderToOnnx(w: AutoencoderWeights, meta: Record<string, string> = {}): Uint8Array {
  const { dim: d, hidden: h } = w;
  const model: OnnxModel = {
    irVersion: 7,
    opsetImports: [{ domain: '', version: 13 }],
    producerName: 'parallax',
    producerVersion: ENGINE_VERSION,
    docString: 'Parallax autoencoder signal: reconstruction MSE of the standardised embedding (higher = more anomalous).',
    metadata: { signal: 'autoencoder', activation: w.activation, ...meta },
    graph: {
      name: 'parallax_autoencoder',
      inputs: [{ name: 'embedding', elemType: 'float32', dims: ['N', d] }],
      outputs: [
        { name: 'reconstruction_error', elemType: 'float32', dims: ['N'] },
        { name: 'reconstruction', elemType: 'float32', dims: ['N', d] },
      ],
      initializers: [
        { name: 'mean', elemType: 'float32', dims: [d], data: w.mean },
        { name: 'inv_scale', elemType: 'float32', dims: [1], data: new Float32Array([1 / w.scale]) },
        { name: 'w1', elemType: 'float32', dims: [h, d], data: w.w1 },
        { name: 'b1', elemType: 'float32', dims: [h], data: w.b1 },
        { name: 'w2', elemType: 'float32', dims: [d, h], data: w.w2 },
        { name: 'b2', elemType: 'float32', dims: [d], data: w.b2 },
      ],
      nodes: [
        { opType: 'Sub', name: 'centre', inputs: ['embedding', 'mean'], outputs: ['centred'] },
        { opType: 'Mul', name: 'standardise', inputs: ['centred', 'inv_scale'], outputs: ['x'] },
        { opType: 'Gemm', name: 'encode', inputs: ['x', 'w1', 'b1'], outputs: ['pre'], attributes: { transB: attr.int(1) } },
        { opType: w.activation === 'relu' ? 'Relu' : 'Tanh', name: 'activation', inputs: ['pre'], outputs: ['hidden'] },
        { opType: 'Gemm', name: 'decode', inputs: ['hidden', 'w2', 'b2'], outputs: ['reconstruction'], attributes: { transB: attr.int(1) } },
        { opType: 'Sub', name: 'residual', inputs: ['reconstruction', 'x'], outputs: ['diff'] },
        { opType: 'Mul', name: 'square', inputs: ['diff', 'diff'], outputs: ['sq'] },
        {
          opType: 'ReduceMean',
          name: 'mse',
          inputs: ['sq'],
          outputs: ['reconstruction_error'],
          attributes: { axes: attr.ints([1]), keepdims: attr.int(0) },
        },
      ],
    },
  };
  return encodeOnnxModel(model);
}
