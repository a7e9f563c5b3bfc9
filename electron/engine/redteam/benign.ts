// Benign controls: the everyday changes a legitimate image goes through on its way to a model
// (re-compression, rescaling, reframing, colour correction, a slightly tilted scan). A detector
// that flags these is unusable, so every red-team report sets the attacks' embedding shifts
// against these.
//
// Photometric changes (JPEG, colour, rescale) are applied at the encoder's input size, where
// they are strongest; geometric ones (crop, rotate) to the full decoded original, as a camera or
// an editor would, and then resized exactly as ingest resizes.

import sharp, { type OutputInfo, type Sharp } from 'sharp';
import type { Rng } from '../../../shared/types.js';
import { randInt, uniform } from '../../../shared/math/rng.js';
import { resizeForEncoder, type DecodedImage } from '../ingest/image.js';
import { checkImages, fromBytes, quantise, toBytes, type ImageSize } from './pixels.js';

export type BenignKind = 'jpeg' | 'resize' | 'crop' | 'color' | 'rotate';

export interface BenignResult {
  pixels: Float32Array;
  /** What was done, for the manifest (quality, factors, angle…). */
  params: Record<string, number | string>;
}

/**
 * `source` is the decoded original (for crop and rotate); `clean` is it resized to `size`
 * (for the others).
 */
export async function benignTransform(
  kind: BenignKind,
  source: DecodedImage,
  clean: Float32Array,
  size: ImageSize,
  rng: Rng,
): Promise<BenignResult> {
  checkImages(`benign-${kind}`, clean, 1, size);
  switch (kind) {
    case 'jpeg':
      return jpegRoundTrip(clean, size, randInt(rng, 16) + 70);
    case 'resize':
      return rescale(clean, size, uniform(rng, 0.6, 0.8));
    case 'crop':
      return crop(source, size, uniform(rng, 0.8, 0.92), rng);
    case 'color':
      return colour(clean, size, {
        brightness: signedFactor(rng),
        contrast: signedFactor(rng),
        saturation: signedFactor(rng),
      });
    case 'rotate':
      return rotate(source, size, (rng() < 0.5 ? -1 : 1) * uniform(rng, 3, 6));
  }
}

async function jpegRoundTrip(clean: Float32Array, size: ImageSize, quality: number): Promise<BenignResult> {
  const jpeg = await rawImage(clean, size).jpeg({ quality }).toBuffer();
  const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
  expectSize('benign-jpeg', info, size);
  return { pixels: fromBytes(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)), params: { quality } };
}

async function rescale(clean: Float32Array, size: ImageSize, factor: number): Promise<BenignResult> {
  const w = Math.max(1, Math.round(size.width * factor));
  const h = Math.max(1, Math.round(size.height * factor));
  // Two pipelines: sharp applies only the last resize of a chain. Default kernel (lanczos3), as most tools would.
  const small = await rawImage(clean, size).resize(w, h, { fit: 'fill' }).raw().toBuffer();
  const { data, info } = await sharp(small, { raw: { width: w, height: h, channels: 3 } })
    .resize(size.width, size.height, { fit: 'fill' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  expectSize('benign-resize', info, size);
  return { pixels: fromBytes(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)), params: { factor: round3(factor), via: `${w}x${h}` } };
}

async function crop(source: DecodedImage, size: ImageSize, keep: number, rng: Rng): Promise<BenignResult> {
  const w = Math.max(1, Math.round(source.width * keep));
  const h = Math.max(1, Math.round(source.height * keep));
  const central = rng() < 0.5;
  const left = central ? Math.floor((source.width - w) / 2) : randInt(rng, source.width - w + 1);
  const top = central ? Math.floor((source.height - h) / 2) : randInt(rng, source.height - h + 1);
  const rgb = await sharp(source.rgb, { raw: { width: source.width, height: source.height, channels: 3 } })
    .extract({ left, top, width: w, height: h })
    .raw()
    .toBuffer();
  const pixels = await resizeForEncoder({ ...source, width: w, height: h, rgb: new Uint8Array(rgb.buffer, rgb.byteOffset, rgb.byteLength) }, size.width, size.height);
  return { pixels, params: { keep: round3(keep), placement: central ? 'central' : 'random', left, top, width: w, height: h } };
}

function colour(clean: Float32Array, size: ImageSize, f: { brightness: number; contrast: number; saturation: number }): BenignResult {
  const n = size.width * size.height;
  const out = new Float32Array(clean.length);
  let meanLuma = 0;
  for (let p = 0; p < n; p++) meanLuma += luma(clean, p * 3) * f.brightness;
  meanLuma /= n;
  for (let p = 0; p < n; p++) {
    const o = p * 3;
    const rgb = [clean[o] * f.brightness, clean[o + 1] * f.brightness, clean[o + 2] * f.brightness];
    for (let c = 0; c < 3; c++) rgb[c] = (rgb[c] - meanLuma) * f.contrast + meanLuma;
    const y = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
    for (let c = 0; c < 3; c++) out[o + c] = Math.min(1, Math.max(0, y + (rgb[c] - y) * f.saturation));
  }
  return {
    pixels: quantise(out),
    params: { brightness: round3(f.brightness), contrast: round3(f.contrast), saturation: round3(f.saturation) },
  };
}

async function rotate(source: DecodedImage, size: ImageSize, degrees: number): Promise<BenignResult> {
  const { data, info } = await sharp(source.rgb, { raw: { width: source.width, height: source.height, channels: 3 } })
    .rotate(degrees, { background: { r: 0, g: 0, b: 0 } })
    .raw()
    .toBuffer({ resolveWithObject: true });
  // The largest upright rectangle inside the rotated picture, less 2 px for the
  // antialiased edge, so no background corner survives.
  const inner = largestInnerRectangle(source.width, source.height, (degrees * Math.PI) / 180);
  const w = Math.max(1, Math.floor(inner.width) - 2);
  const h = Math.max(1, Math.floor(inner.height) - 2);
  const left = Math.max(0, Math.floor((info.width - w) / 2));
  const top = Math.max(0, Math.floor((info.height - h) / 2));
  const rgb = await sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } })
    .extract({ left, top, width: Math.min(w, info.width - left), height: Math.min(h, info.height - top) })
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const pixels = await resizeForEncoder(
    { ...source, width: rgb.info.width, height: rgb.info.height, rgb: new Uint8Array(rgb.data.buffer, rgb.data.byteOffset, rgb.data.byteLength) },
    size.width,
    size.height,
  );
  return { pixels, params: { degrees: round3(degrees), kept: `${rgb.info.width}x${rgb.info.height}` } };
}

/** Width and height of the largest axis-aligned rectangle inside a w×h rectangle rotated by `angle`. */
export function largestInnerRectangle(w: number, h: number, angle: number): { width: number; height: number } {
  const sin = Math.abs(Math.sin(angle));
  const cos = Math.abs(Math.cos(angle));
  const long = Math.max(w, h);
  const short = Math.min(w, h);
  if (short <= 2 * sin * cos * long || Math.abs(sin - cos) < 1e-10) {
    // Half-constrained: two corners of the rectangle touch the longer sides.
    const x = 0.5 * short;
    return w >= h ? { width: x / sin, height: x / cos } : { width: x / cos, height: x / sin };
  }
  const cos2 = cos * cos - sin * sin;
  return { width: (w * cos - h * sin) / cos2, height: (h * cos - w * sin) / cos2 };
}

// ---------------------------------------------------------------------------------------------

function rawImage(pixels: Float32Array, size: ImageSize): Sharp {
  return sharp(toBytes(pixels), { raw: { width: size.width, height: size.height, channels: 3 } });
}

function expectSize(what: string, info: OutputInfo, size: ImageSize): void {
  if (info.width !== size.width || info.height !== size.height || info.channels !== 3) {
    throw new Error(`${what}: got ${info.width}×${info.height}×${info.channels}, expected ${size.width}×${size.height}×3`);
  }
}

/** 1 ± 10–15%. */
function signedFactor(rng: Rng): number {
  return 1 + (rng() < 0.5 ? -1 : 1) * uniform(rng, 0.1, 0.15);
}

function luma(p: Float32Array, o: number): number {
  return 0.2126 * p[o] + 0.7152 * p[o + 1] + 0.0722 * p[o + 2];
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
