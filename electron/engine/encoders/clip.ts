// CLIP from a local model folder, through @huggingface/transformers, as an ImageEncoder with a
// text tower — and the cross-modal agreement signal built on the two.
//
// The folder has the layout transformers.js expects of a converted CLIP checkpoint (e.g.
// Xenova/clip-vit-base-patch32): config.json (model_type 'clip'), tokenizer.json,
// tokenizer_config.json, preprocessor_config.json, onnx/text_model.onnx, onnx/vision_model.onnx
// (or their '_<dtype>' variants). It is loaded exactly as such a checkpoint is —
// CLIPTextModelWithProjection / CLIPVisionModelWithProjection / AutoTokenizer / AutoProcessor
// with remote models disabled — so nothing is ever downloaded: a missing file is an error that
// names it.
//
// Two ways in for images:
//   - embedPixels (the ImageEncoder contract, what the engine stores under `id`): NHWC [0,1] at
//     inputSize, already resized by the caller (the engine's fill-bilinear resize, as for every
//     encoder); this class applies the processor's rescale/normalise and the NCHW layout.
//   - embedImages: any size, through the model's own AutoProcessor (shortest-edge bicubic resize
//     + centre crop, CLIP's reference geometry). For a square image already at inputSize both
//     give the same vector (tested); for other images they differ by the crop, so vectors of
//     the two paths must not be mixed in one baseline.
//
// Cross-modal agreement (`calibrateAgreement`, `agreementSignal`): for an item that comes with
// text (a caption, alt text, the text beside an image in an MCP tool result), the cosine
// between its image and text embeddings is compared with the cosines of legitimate
// image–caption pairs:
//   1. baseline: n pairs (imageᵢ, textᵢ) known to belong together; matched cosines cᵢ;
//      mismatched cosines from a derangement (imageᵢ, text_π(i)), π without fixed points;
//   2. raw score = −cos (higher = more anomalous, the detectors' convention), calibrated by the
//      shared Calibrator on −cᵢ: p = P(a legitimate pair agrees this little), with its
//      exponential tail below the worst legitimate pair;
//   3. reported with it: `relative` = (cos − median mismatched) / (median matched − median
//      mismatched), 1 ≈ a typical true caption, 0 ≈ a typical unrelated one, and the AUROC of
//      matched vs mismatched on the baseline, which says whether this CLIP separates the two
//      at all on this kind of media (≈ 0.5: the signal carries no information; weight it 0).
// The p-value fuses like any other signal (T = Σ w·(−ln p)).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { Calibrator, type CalibratorState } from '../../../shared/detectors/calibration.js';
import { auroc } from '../../../shared/math/stats.js';
import { cosineDistance } from '../../../shared/math/vector.js';
import { canonicalJson, type PreprocessingSpec } from './manifest.js';
import { l2Normalised, type ImageEncoder } from './encoder.js';
import { defaultThreads, type EncoderDevice, type ExecutionProvider } from './providers.js';

type Transformers = typeof import('@huggingface/transformers');

export interface ClipEncoderOptions {
  device?: EncoderDevice;
  /** Images or texts per ONNX run (default 32). */
  batchSize?: number;
  /** CPU intra-op threads; 0 or undefined = one per core. */
  threads?: number;
  /** Which ONNX files: 'fp32' (default: onnx/*_model.onnx), 'fp16', 'q8', … as transformers.js names them. */
  dtype?: 'fp32' | 'fp16' | 'q8' | 'int8' | 'uint8' | 'q4' | 'bnb4' | 'q4f16';
}

const DTYPE_SUFFIX: Record<NonNullable<ClipEncoderOptions['dtype']>, string> = {
  fp32: '',
  fp16: '_fp16',
  q8: '_quantized',
  int8: '_int8',
  uint8: '_uint8',
  q4: '_q4',
  bnb4: '_bnb4',
  q4f16: '_q4f16',
};

const CONFIG_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json'] as const;

/** RGB image, 8 bits per channel, row-major (what ingest's DecodedImage carries). */
export interface RgbImage {
  rgb: Uint8Array;
  width: number;
  height: number;
}

interface Normalisation {
  mean: [number, number, number];
  std: [number, number, number];
  /** Applied to 0–255 values; pixels in [0,1] are multiplied by 255·rescale. */
  rescale: number;
}

/** transformers.js keeps process-wide settings in `env`; loads that change them are serialised. */
let loadQueue: Promise<unknown> = Promise.resolve();

export class ClipEncoder implements ImageEncoder {
  readonly modality = 'image' as const;
  readonly preprocessing: PreprocessingSpec;
  private closed = false;

  constructor(
    readonly id: string,
    readonly dim: number,
    readonly inputSize: { width: number; height: number },
    readonly provider: ExecutionProvider,
    readonly providerNote: string,
    readonly folder: string,
    private readonly tf: Transformers,
    private readonly vision: Awaited<ReturnType<Transformers['CLIPVisionModelWithProjection']['from_pretrained']>>,
    private readonly text: Awaited<ReturnType<Transformers['CLIPTextModelWithProjection']['from_pretrained']>>,
    private readonly tokenizer: Awaited<ReturnType<Transformers['AutoTokenizer']['from_pretrained']>>,
    private readonly processor: Awaited<ReturnType<Transformers['AutoProcessor']['from_pretrained']>>,
    private readonly norm: Normalisation,
    private readonly batchSize: number,
  ) {
    this.preprocessing = clipPreprocessingSpec(inputSize);
  }

  async embedPixels(pixels: Float32Array, n: number): Promise<Float32Array[]> {
    return (await this.rawFeatures(pixels, n)).map(l2Normalised);
  }

  async rawFeatures(pixels: Float32Array, n: number): Promise<Float32Array[]> {
    this.assertOpen();
    const { width, height } = this.inputSize;
    const per = width * height * 3;
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`encoder ${this.id}: n must be a non-negative integer, got ${n}`);
    if (pixels.length !== n * per) {
      throw new RangeError(`encoder ${this.id}: expected ${n} image(s) of ${width}x${height}x3 = ${n * per} floats, got ${pixels.length}`);
    }
    const out: Float32Array[] = [];
    for (let start = 0; start < n; start += this.batchSize) {
      const count = Math.min(this.batchSize, n - start);
      const nchw = new Float32Array(count * per);
      const plane = width * height;
      const scale = 255 * this.norm.rescale;
      for (let i = 0; i < count; i++) {
        const src = (start + i) * per;
        for (let p = 0; p < plane; p++) {
          for (let c = 0; c < 3; c++) {
            const v = pixels[src + p * 3 + c];
            // Written so that NaN fails too.
            if (!(v >= -1e-3 && v <= 1 + 1e-3)) {
              throw new RangeError(`encoder ${this.id}: pixel value ${v} (image ${start + i}) is outside [0, 1]; pixels must be scaled as the preprocessing spec says`);
            }
            nchw[i * per + c * plane + p] = (v * scale - this.norm.mean[c]) / this.norm.std[c];
          }
        }
      }
      out.push(...(await this.runVision(new this.tf.Tensor('float32', nchw, [count, 3, height, width]), count)));
    }
    return out;
  }

  /** Images of any size through the model's AutoProcessor (CLIP's own resize + crop). */
  async embedImages(images: readonly RgbImage[]): Promise<Float32Array[]> {
    this.assertOpen();
    const out: Float32Array[] = [];
    for (let start = 0; start < images.length; start += this.batchSize) {
      const batch = images.slice(start, start + this.batchSize).map((img, i) => {
        if (img.rgb.length !== img.width * img.height * 3) throw new RangeError(`encoder ${this.id}: image ${start + i} has ${img.rgb.length} bytes, expected ${img.width}×${img.height}×3`);
        return new this.tf.RawImage(new Uint8ClampedArray(img.rgb.buffer, img.rgb.byteOffset, img.rgb.byteLength), img.width, img.height, 3);
      });
      const { pixel_values } = await this.processor(batch);
      out.push(...(await this.runVision(pixel_values, batch.length)).map(l2Normalised));
    }
    return out;
  }

  /** Unit-length text embeddings (CLIP truncates at its 77-token context). */
  async embedTexts(texts: readonly string[]): Promise<Float32Array[]> {
    this.assertOpen();
    const out: Float32Array[] = [];
    for (let start = 0; start < texts.length; start += this.batchSize) {
      const batch = texts.slice(start, start + this.batchSize).map((t, i) => {
        if (typeof t !== 'string') throw new TypeError(`encoder ${this.id}: text ${start + i} is not a string`);
        return t;
      });
      const inputs = this.tokenizer(batch, { padding: true, truncation: true });
      const result = await this.text(inputs);
      out.push(...splitRows(result.text_embeds, batch.length, this.dim, `${this.id} text_embeds`).map(l2Normalised));
    }
    return out;
  }

  private async runVision(pixelValues: InstanceType<Transformers['Tensor']>, count: number): Promise<Float32Array[]> {
    const result = await this.vision({ pixel_values: pixelValues });
    return splitRows(result.image_embeds, count, this.dim, `${this.id} image_embeds`);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`encoder ${this.id} is closed`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([this.vision.dispose(), this.text.dispose()]);
  }
}

function splitRows(tensor: { dims: number[]; data: unknown } | undefined, count: number, dim: number, what: string): Float32Array[] {
  if (!tensor || tensor.dims.length !== 2 || tensor.dims[0] !== count || tensor.dims[1] !== dim) {
    throw new Error(`${what}: the model returned ${tensor ? `[${tensor.dims}]` : 'nothing'}, expected [${count},${dim}]`);
  }
  const data = tensor.data as Float32Array;
  return Array.from({ length: count }, (_, i) => data.slice(i * dim, (i + 1) * dim));
}

function clipPreprocessingSpec(size: { width: number; height: number }): PreprocessingSpec {
  return { layout: 'NHWC', size: [size.width, size.height], channels: 3, colorSpace: 'sRGB', range: [0, 1], resize: 'fill-bilinear' };
}

/**
 * Opens the CLIP model in `folder`. Its id is `clip:<folder name>@<12 hex>`, the hex digest
 * covering the ONNX files actually loaded, the four JSON configs and the pixel contract.
 */
export async function openClipEncoder(folder: string, options: ClipEncoderOptions = {}): Promise<ClipEncoder> {
  const dir = path.resolve(folder);
  const dtype = options.dtype ?? 'fp32';
  const batchSize = options.batchSize ?? 32;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  const onnxFiles = ['text_model', 'vision_model'].map((m) => path.join('onnx', `${m}${DTYPE_SUFFIX[dtype]}.onnx`));
  const missing = [...CONFIG_FILES, ...onnxFiles].filter((f) => !existsSync(path.join(dir, f)));
  if (missing.length) throw new Error(`CLIP model folder ${dir} lacks ${missing.join(', ')}`);
  const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as { model_type?: string; projection_dim?: number };
  if (config.model_type !== 'clip') throw new Error(`${path.join(dir, 'config.json')}: model_type is '${config.model_type}', expected 'clip'`);

  const { device, provider, note } = transformersDevice(options.device ?? 'auto');
  const threads = defaultThreads(options.threads);
  const tf = await import('@huggingface/transformers');
  const loaded = await serialisedLoad(async () => {
    tf.env.allowRemoteModels = false;
    tf.env.allowLocalModels = true;
    tf.env.localModelPath = path.dirname(dir);
    const name = path.basename(dir);
    const modelOptions = {
      local_files_only: true,
      dtype,
      device,
      session_options: { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' as const },
    };
    return Promise.all([
      tf.CLIPVisionModelWithProjection.from_pretrained(name, modelOptions),
      tf.CLIPTextModelWithProjection.from_pretrained(name, modelOptions),
      tf.AutoTokenizer.from_pretrained(name, { local_files_only: true }),
      tf.AutoProcessor.from_pretrained(name, { local_files_only: true }),
    ]);
  }).catch((err: unknown) => {
    throw new Error(`cannot load the CLIP model in ${dir}: ${(err as Error).message}`, { cause: err });
  });
  const [vision, text, tokenizer, processor] = loaded;

  const pre = JSON.parse(readFileSync(path.join(dir, 'preprocessor_config.json'), 'utf8')) as Record<string, unknown>;
  const inputSize = cropSize(pre, dir);
  const norm: Normalisation = {
    mean: triple(pre.do_normalize === false ? [0, 0, 0] : pre.image_mean, 'image_mean', dir),
    std: triple(pre.do_normalize === false ? [1, 1, 1] : pre.image_std, 'image_std', dir),
    rescale: pre.do_rescale === false ? 1 : typeof pre.rescale_factor === 'number' ? pre.rescale_factor : 1 / 255,
  };

  const hash = createHash('sha256');
  for (const f of [...CONFIG_FILES, ...onnxFiles]) hash.update(f).update('\0').update(readFileSync(path.join(dir, f)));
  hash.update(canonicalJson(clipPreprocessingSpec(inputSize)));
  const id = `clip:${path.basename(dir)}@${hash.digest('hex').slice(0, 12)}`;

  // The output width is read from the model, not trusted from config.json.
  const probe = await vision({ pixel_values: new tf.Tensor('float32', new Float32Array(3 * inputSize.width * inputSize.height), [1, 3, inputSize.height, inputSize.width]) });
  const dim = probe.image_embeds?.dims?.[1];
  if (!Number.isInteger(dim) || dim < 1) throw new Error(`CLIP model in ${dir}: vision model has no [N, dim] 'image_embeds' output`);
  if (config.projection_dim !== undefined && config.projection_dim !== dim) {
    throw new Error(`CLIP model in ${dir}: config.json says projection_dim ${config.projection_dim} but the vision model outputs ${dim}`);
  }
  return new ClipEncoder(id, dim, inputSize, provider, `${note} (${threads} threads, transformers.js)`, dir, tf, vision, text, tokenizer, processor, norm, batchSize);
}

function serialisedLoad<T>(fn: () => Promise<T>): Promise<T> {
  const run = loadQueue.then(fn, fn);
  loadQueue = run.catch(() => undefined);
  return run;
}

/**
 * transformers.js opens its own sessions (on the same onnxruntime-node), so the engine's
 * probing fallback (providers.ts) does not apply: 'auto' means cpu here, and an explicit GPU
 * provider is passed through and fails loudly if unusable.
 */
function transformersDevice(device: EncoderDevice): { device: 'cpu' | 'webgpu' | 'cuda'; provider: ExecutionProvider; note: string } {
  if (device === 'auto') return { device: 'cpu', provider: 'cpu', note: 'auto: cpu (GPU selection is not wired for transformers.js models)' };
  if (device === 'cpu' || device === 'webgpu' || device === 'cuda') return { device, provider: device, note: `${device} requested` };
  throw new Error(`unknown device '${String(device)}' (auto, cpu, webgpu, cuda)`);
}

function cropSize(pre: Record<string, unknown>, dir: string): { width: number; height: number } {
  const crop = pre.crop_size as { width?: number; height?: number } | number | undefined;
  const size = pre.size as { shortest_edge?: number; width?: number; height?: number } | number | undefined;
  const pick = (v: typeof crop | typeof size): { width: number; height: number } | null => {
    if (typeof v === 'number') return { width: v, height: v };
    if (v && typeof v === 'object') {
      if ('width' in v && 'height' in v && v.width && v.height) return { width: v.width, height: v.height };
      if ('shortest_edge' in v && v.shortest_edge) return { width: v.shortest_edge, height: v.shortest_edge };
    }
    return null;
  };
  const got = (pre.do_center_crop !== false ? pick(crop) : null) ?? pick(size);
  if (!got) throw new Error(`${path.join(dir, 'preprocessor_config.json')}: no crop_size or size to take the input size from`);
  return got;
}

function triple(v: unknown, name: string, dir: string): [number, number, number] {
  if (typeof v === 'number') return [v, v, v];
  if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number')) return v as [number, number, number];
  throw new Error(`${path.join(dir, 'preprocessor_config.json')}: ${name} must be 3 numbers`);
}

// ---------------------------------------------------------------------------------------------
// Cross-modal agreement

export interface AgreementCalibrationState {
  kind: 'parallax.clip-agreement';
  version: 1;
  encoderId: string;
  /** Calibrator over −cos of the matched baseline pairs. */
  calibrator: CalibratorState;
  medianMatched: number;
  medianMismatched: number;
  /** AUROC of matched vs mismatched cosines on the baseline (0.5 = no separation). */
  auroc: number;
}

export interface AgreementResult {
  cosine: number;
  /** P(a legitimate pair agrees this little or less), with the calibrator's exponential tail. */
  p: number;
  /** Share of legitimate pairs that agree more than this one. */
  risk: number;
  /** 1 ≈ a typical true caption, 0 ≈ a typical unrelated one (may leave [0, 1]). */
  relative: number;
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`cosine: vectors of length ${a.length} and ${b.length}`);
  // A zero vector is at distance 1 from everything: similarity 0.
  return 1 - cosineDistance(a, b);
}

/**
 * Fits the agreement calibration on baseline pairs (images[i] belongs with texts[i]). The
 * derangement pairing i → (i + shift) mod n, shift = ⌊n/2⌋, is fixed-point free and
 * deterministic, so the same baseline always gives the same state.
 */
export function calibrateAgreement(encoderId: string, images: readonly Float32Array[], texts: readonly Float32Array[]): AgreementCalibrationState {
  const n = images.length;
  if (n !== texts.length) throw new RangeError(`calibrateAgreement: ${n} image embeddings but ${texts.length} text embeddings`);
  if (n < 10) throw new RangeError(`calibrateAgreement: needs at least 10 image–text pairs, got ${n}`);
  const matched = images.map((img, i) => cosine(img, texts[i]));
  const shift = Math.floor(n / 2);
  const mismatched = images.map((img, i) => cosine(img, texts[(i + shift) % n]));
  const median = (v: number[]) => {
    const s = [...v].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  return {
    kind: 'parallax.clip-agreement',
    version: 1,
    encoderId,
    calibrator: Calibrator.fit(matched.map((c) => -c)).toJSON(),
    medianMatched: median(matched),
    medianMismatched: median(mismatched),
    auroc: auroc(matched, mismatched),
  };
}

export class AgreementModel {
  private readonly calibrator: Calibrator;

  constructor(readonly state: AgreementCalibrationState) {
    if (state?.kind !== 'parallax.clip-agreement' || state.version !== 1) throw new RangeError('not a CLIP agreement calibration (kind/version)');
    this.calibrator = Calibrator.fromJSON(state.calibrator);
  }

  score(image: Float32Array, text: Float32Array, encoderId: string): AgreementResult {
    if (encoderId !== this.state.encoderId) {
      throw new Error(`agreement calibrated with encoder ${this.state.encoderId} cannot score embeddings from ${encoderId}`);
    }
    const c = cosine(image, text);
    const spread = this.state.medianMatched - this.state.medianMismatched;
    return {
      cosine: c,
      p: this.calibrator.p(-c),
      risk: this.calibrator.risk(-c),
      relative: spread !== 0 ? (c - this.state.medianMismatched) / spread : 0,
    };
  }
}
