// The default image encoder: the MobileNetV2 backbone converted at install time
// (scripts/build-models.ts) and run with ONNX Runtime.
//
// The class is not MobileNet-specific: any model built by build.ts (manifest + .onnx with one
// NHWC float input and one [N, dim] output) runs through it; openMobileNetEncoder only picks
// which manifest to open.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';

import { encoderId, l2Normalised, type ImageEncoder } from './encoder.js';
import { manifestPathFor, readModelManifest, sha256Hex, type ModelManifest, type PreprocessingSpec } from './manifest.js';
import { defaultModelDir } from './paths.js';
import { createSession, type EncoderDevice, type ExecutionProvider } from './providers.js';

export const MOBILENET_V2_ARTIFACT = 'mobilenet_v2_backbone';

export interface BackboneEncoderOptions {
  /** Folder holding `<artifact>.onnx` and `<artifact>.json` (default: models/build/ in the package). */
  modelDir?: string;
  device?: EncoderDevice;
  /** Images per ONNX Runtime run (default 32). */
  batchSize?: number;
  /** CPU intra-op threads; 0 or undefined = one per core. */
  threads?: number;
}

/** Pixel values further outside the spec's range than this are a caller bug (e.g. 0-255 bytes), not rounding. */
const RANGE_SLACK = 1e-3;

export class OnnxBackboneEncoder implements ImageEncoder {
  readonly modality = 'image' as const;
  readonly dim: number;
  readonly inputSize: { width: number; height: number };
  /** How callers must prepare `pixels` (resize mode, range); part of `id`. */
  readonly preprocessing: PreprocessingSpec;
  private closed = false;

  constructor(
    readonly id: string,
    readonly provider: ExecutionProvider,
    readonly providerNote: string,
    readonly manifest: ModelManifest,
    private readonly session: ort.InferenceSession,
    private readonly batchSize: number,
  ) {
    this.dim = manifest.output.dim;
    this.preprocessing = manifest.input.preprocessing;
    const [width, height] = manifest.input.preprocessing.size;
    this.inputSize = { width, height };
  }

  async embedPixels(pixels: Float32Array, n: number): Promise<Float32Array[]> {
    return (await this.rawFeatures(pixels, n)).map(l2Normalised);
  }

  async rawFeatures(pixels: Float32Array, n: number): Promise<Float32Array[]> {
    if (this.closed) throw new Error(`encoder ${this.id} is closed`);
    const { width, height } = this.inputSize;
    const perImage = width * height * 3;
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`encoder ${this.id}: n must be a non-negative integer, got ${n}`);
    if (pixels.length !== n * perImage) {
      throw new RangeError(`encoder ${this.id}: expected ${n} image(s) of ${width}x${height}x3 = ${n * perImage} floats, got ${pixels.length}`);
    }
    this.checkRange(pixels, perImage);

    const out: Float32Array[] = [];
    for (let start = 0; start < n; start += this.batchSize) {
      const count = Math.min(this.batchSize, n - start);
      // subarray: a view, no copy; ONNX Runtime reads it in place.
      const batch = pixels.subarray(start * perImage, (start + count) * perImage);
      const feeds = { [this.manifest.input.name]: new ort.Tensor('float32', batch, [count, height, width, 3]) };
      const result = await this.session.run(feeds);
      const features = result[this.manifest.output.name];
      if (!features || features.dims.join(',') !== `${count},${this.dim}`) {
        throw new Error(`encoder ${this.id}: ONNX Runtime returned ${features ? `[${features.dims}]` : 'nothing'} for "${this.manifest.output.name}", expected [${count},${this.dim}]`);
      }
      const data = features.data as Float32Array;
      // slice (copy) so each embedding owns its memory, independent of ONNX Runtime's output buffer.
      for (let i = 0; i < count; i++) out.push(data.slice(i * this.dim, (i + 1) * this.dim));
      features.dispose();
    }
    return out;
  }

  private checkRange(pixels: Float32Array, perImage: number): void {
    const [lo, hi] = this.preprocessing.range;
    for (let i = 0; i < pixels.length; i++) {
      const v = pixels[i];
      // Written so that NaN fails too.
      if (!(v >= lo - RANGE_SLACK && v <= hi + RANGE_SLACK)) {
        throw new RangeError(
          `encoder ${this.id}: pixel value ${v} (image ${Math.floor(i / perImage)}, offset ${i % perImage}) is outside [${lo}, ${hi}]; pixels must be scaled as the preprocessing spec says`,
        );
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.session.release();
  }
}

/** Opens any model built by build.ts from its manifest. */
export async function openBackboneEncoder(artifact: string, options: BackboneEncoderOptions = {}): Promise<OnnxBackboneEncoder> {
  const modelDir = options.modelDir ?? defaultModelDir();
  const batchSize = options.batchSize ?? 32;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);

  const manifestPath = manifestPathFor(modelDir, artifact);
  let manifest: ModelManifest;
  try {
    manifest = readModelManifest(manifestPath);
  } catch (err) {
    throw new Error(`${artifact}: ${(err as Error).message}. Run 'npm run build:models' to build it.`, { cause: err });
  }
  const onnxPath = path.join(modelDir, manifest.onnx);
  let onnx: Uint8Array;
  try {
    onnx = new Uint8Array(readFileSync(onnxPath));
  } catch (err) {
    throw new Error(`${artifact}: cannot read ${onnxPath} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}). Run 'npm run build:models'.`);
  }
  // The id promises "same id, same vectors": only true if these are the bytes the manifest describes.
  if (sha256Hex(onnx) !== manifest.onnxSha256) {
    throw new Error(`${artifact}: ${onnxPath} does not match the sha256 in ${manifestPath} (modified or partly written). Run 'npm run build:models' to rebuild it.`);
  }

  const [width, height] = manifest.input.preprocessing.size;
  const probe = async (session: ort.InferenceSession): Promise<void> => {
    const blank = new ort.Tensor('float32', new Float32Array(height * width * 3), [1, height, width, 3]);
    await session.run({ [manifest.input.name]: blank });
  };
  const { session, provider, note } = await createSession(onnx, options.device ?? 'auto', { threads: options.threads, probe });
  return new OnnxBackboneEncoder(encoderId(manifest.name, onnx, manifest.input.preprocessing), provider, note, manifest, session, batchSize);
}

/** The default encoder: MobileNetV2 backbone, 1280-d, 224x224 input. */
export function openMobileNetEncoder(options: BackboneEncoderOptions = {}): Promise<OnnxBackboneEncoder> {
  return openBackboneEncoder(MOBILENET_V2_ARTIFACT, options);
}
