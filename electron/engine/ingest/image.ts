// Image ingest: untrusted bytes in, 8-bit sRGB pixels (or an IngestError) out.
//
// Every failure becomes an IngestError with a code and a plain message, so one hostile or broken
// file in a batch costs one error row and nothing else. The defences, in the order they run:
//   1. size limits before reading (readAndDecodeImage) and before decoding (decodeImage);
//   2. the type is sniffed from the bytes, never taken from the file name;
//   3. the header's dimensions are read without decoding and checked against maxPixels, so a
//      decompression bomb is refused before any pixel memory is allocated (sharp's own
//      limitInputPixels is kept as a second guard);
//   4. the decoder is strict (failOn 'warning', see SHARP_FAIL_ON) and bounded in time.

import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import sharp, { type FormatEnum } from 'sharp';
import { decodeBmp } from './bmp.js';
import { IngestError, firstLine } from './errors.js';
import { sniff, type SniffResult } from './sniff.js';

export { IngestError, type IngestErrorCode } from './errors.js';

export interface IngestLimits {
  maxFileBytes: number;
  maxPixels: number;
  decodeTimeoutMs: number;
}

export const DEFAULT_LIMITS: IngestLimits = { maxFileBytes: 50 * 1024 * 1024, maxPixels: 40_000_000, decodeTimeoutMs: 10_000 };

export interface DecodedImage {
  /** SHA-256 (hex) of the original bytes: identifies the item. */
  sha256: string;
  mime: string;
  format: string;
  /** After EXIF orientation. */
  width: number;
  height: number;
  /** EXIF orientation found (1 if none or invalid). */
  orientation: number;
  /** Size of the original file in bytes. */
  bytes: number;
  /** width*height*3, sRGB, alpha flattened onto white, orientation applied. */
  rgb: Uint8Array;
}

// libvips caches operations for re-use; in a long batch of distinct files that only makes
// memory use grow and harder to predict, and there is nothing to re-use.
sharp.cache(false);

/**
 * 'truncated' is the least strict level that rejects a JPEG or PNG cut at 60% (with 'none',
 * libvips fills the missing rows with grey and reports success). 'warning' is stricter still:
 * it also rejects files that libjpeg/libpng only decode through their error recovery (for
 * example after a flipped bit in the entropy-coded data). Such files can decode differently in
 * other decoders, so the pixels scored here might not be the pixels a downstream model sees;
 * for inputs that may be adversarial, refusing them is the safer answer. None of the 1,160
 * sample photos in shared/data/images trip it.
 */
const SHARP_FAIL_ON = 'warning' as const;

/** Sniffed format → sharp's decoder name. Formats not listed here are not decoded by sharp. */
const SHARP_DECODERS: Record<string, keyof FormatEnum> = {
  jpeg: 'jpeg',
  png: 'png',
  gif: 'gif',
  webp: 'webp',
  tiff: 'tiff',
  bigtiff: 'tiff',
  avif: 'heif',
  heic: 'heif',
  heif: 'heif',
  jxl: 'jxl',
  jp2: 'jp2',
};

export async function readAndDecodeImage(path: string, limits: IngestLimits = DEFAULT_LIMITS): Promise<DecodedImage> {
  // stat before open: a FIFO or a folder must be refused, not opened (opening a FIFO blocks).
  const info = await stat(path).catch((e: unknown) => {
    throw new IngestError('unreadable', fsErrorText(e), { cause: e });
  });
  if (info.isDirectory()) throw new IngestError('unreadable', 'is a folder, not a file');
  if (!info.isFile()) throw new IngestError('unreadable', 'is not a regular file');
  checkSize(info.size, limits);

  let data: Buffer;
  try {
    // O_NONBLOCK: should the path be swapped for a FIFO after the stat, open must not hang.
    const handle = await open(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    try {
      const opened = await handle.stat();
      if (!opened.isFile()) throw new IngestError('unreadable', 'is not a regular file');
      checkSize(opened.size, limits);
      data = await handle.readFile();
    } finally {
      await handle.close();
    }
  } catch (e) {
    if (e instanceof IngestError) throw e;
    throw new IngestError('unreadable', fsErrorText(e), { cause: e });
  }
  return decodeImage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), limits);
}

export async function decodeImage(bytes: Uint8Array, limits: IngestLimits = DEFAULT_LIMITS): Promise<DecodedImage> {
  if (!(bytes instanceof Uint8Array)) throw new IngestError('unreadable', 'input is not a byte array');
  checkSize(bytes.length, limits);
  const kind = sniff(bytes);
  refuseUndecodable(kind);
  const sha256 = createHash('sha256').update(bytes).digest('hex');

  const decoded = kind.format === 'bmp' ? decodeBmpImage(bytes, limits) : await decodeWithSharp(bytes, kind, limits);
  return { sha256, mime: kind.mime, format: kind.format, bytes: bytes.length, ...decoded };
}

/**
 * Resize to the encoder's input size, stretching to fill (aspect ratio not kept), and return
 * NHWC float32 in [0, 1]. Kernel: libvips 'linear' (triangle filter). When shrinking by more
 * than 2×, libvips box-averages first and then applies the kernel, so large reductions are
 * antialiased, much like PIL's BILINEAR resize (and unlike torch's non-antialiased bilinear).
 */
export async function resizeForEncoder(img: Pick<DecodedImage, 'rgb' | 'width' | 'height'>, width: number, height: number): Promise<Float32Array> {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new RangeError(`resizeForEncoder: target size must be positive integers, got ${width}×${height}`);
  }
  if (img.rgb.length !== img.width * img.height * 3) {
    throw new RangeError(`resizeForEncoder: rgb has ${img.rgb.length} bytes, expected ${img.width}×${img.height}×3`);
  }
  const resized = await sharp(img.rgb, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(width, height, { fit: 'fill', kernel: 'linear' })
    .raw()
    .toBuffer();
  const out = new Float32Array(resized.length);
  for (let i = 0; i < resized.length; i++) out[i] = resized[i] / 255;
  return out;
}

/**
 * Encoder-input tensor → bytes, the inverse of the b / 255 above: each value rounded to the
 * nearest grey level and clamped to [0, 255] (NaN becomes 0).
 */
export function toBytes(pixels: Float32Array): Uint8Array {
  const out = new Uint8Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) out[i] = Math.min(255, Math.max(0, Math.round(pixels[i] * 255)));
  return out;
}

/**
 * Bytes → encoder-input tensor. Math.fround(b / 255) is exactly what resizeForEncoder stores,
 * so an image saved as PNG and read again is bit-identical.
 */
export function fromBytes(bytes: Uint8Array, out = new Float32Array(bytes.length)): Float32Array {
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i] / 255;
  return out;
}

// ---------------------------------------------------------------------------------------------

function checkSize(size: number, limits: IngestLimits): void {
  if (size === 0) throw new IngestError('empty', 'file is empty (0 bytes)');
  if (size > limits.maxFileBytes) {
    throw new IngestError('too_large', `file is ${formatBytes(size)}, over the limit of ${formatBytes(limits.maxFileBytes)}`);
  }
}

/** Refuses what is not an image, or is an image kind this build cannot decode, before any decoder runs. */
function refuseUndecodable(kind: SniffResult): void {
  if (kind.modality === 'audio' || kind.modality === 'video') {
    throw new IngestError('unsupported_type', `${kind.modality} (${kind.label}) is not an image`);
  }
  if (kind.modality === null) {
    if (kind.format === 'unknown') {
      throw new IngestError('unsupported_type', 'unrecognised file type: the bytes match no known image, audio or video format');
    }
    throw new IngestError('not_media', `not an image: the file looks like ${withArticle(kind.label)}`);
  }
  if (kind.format === 'svg') {
    // Rasterising untrusted SVG means running a renderer that can reference external files and
    // whose output depends on fonts and versions; it is refused rather than half-supported.
    throw new IngestError('unsupported_type', 'SVG vector images are not decoded; convert to PNG first');
  }
  if (kind.format !== 'bmp') {
    const decoder = SHARP_DECODERS[kind.format];
    if (decoder === undefined || !sharp.format[decoder]?.input.buffer) {
      throw new IngestError('unsupported_type', `${kind.label} images are not supported by this build's image decoder`);
    }
  }
}

function decodeBmpImage(bytes: Uint8Array, limits: IngestLimits): Pick<DecodedImage, 'width' | 'height' | 'orientation' | 'rgb'> {
  // Synchronous and bounded by maxPixels (checked before allocation), so the decode timeout
  // has nothing to interrupt here.
  const bmp = decodeBmp(bytes, limits.maxPixels);
  return { width: bmp.width, height: bmp.height, orientation: 1, rgb: bmp.rgb };
}

async function decodeWithSharp(
  bytes: Uint8Array,
  kind: SniffResult,
  limits: IngestLimits,
): Promise<Pick<DecodedImage, 'width' | 'height' | 'orientation' | 'rgb'>> {
  const work = (async () => {
    // metadata() parses the header only. The library's pixel limit is switched off for this
    // call so the header's dimensions can be reported, and judged, here.
    const meta = await sharp(bytes, { limitInputPixels: false }).metadata().catch((e: unknown) => {
      throw classifySharpError(e, bytes, kind, limits, 'read the header of');
    });
    if (!(meta.width > 0 && meta.height > 0)) {
      throw new IngestError('corrupt', `${kind.label} header has no valid dimensions`);
    }
    if (meta.width * meta.height > limits.maxPixels) {
      throw new IngestError(
        'decompression_bomb',
        `${kind.label} header declares ${meta.width}×${meta.height} = ${meta.width * meta.height} pixels, ` +
          `over the limit of ${limits.maxPixels}`,
      );
    }
    const orientation = Number.isInteger(meta.orientation) && meta.orientation! >= 1 && meta.orientation! <= 8 ? meta.orientation! : 1;

    const { data, info } = await sharp(bytes, {
      failOn: SHARP_FAIL_ON,
      limitInputPixels: limits.maxPixels,
      autoOrient: true,
      // Animated GIF/WebP and multi-page TIFF: the first frame/page only.
      page: 0,
      pages: 1,
    })
      .timeout({ seconds: Math.max(1, Math.ceil(limits.decodeTimeoutMs / 1000)) })
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true })
      .catch((e: unknown) => {
        throw classifySharpError(e, bytes, kind, limits, 'decode');
      });
    if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
      throw new IngestError('corrupt', `${kind.label} decoded to an unexpected layout (${info.channels} channels)`);
    }
    // A plain Uint8Array view (no copy), so results compare equal whichever decoder made them.
    const rgb = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return { width: info.width, height: info.height, orientation, rgb };
  })();
  return withDeadline(work, limits.decodeTimeoutMs);
}

function classifySharpError(e: unknown, bytes: Uint8Array, kind: SniffResult, limits: IngestLimits, action: string): IngestError {
  const detail = firstLine(e).replace(/^Input (buffer|file) has corrupt header: /, '');
  if (/exceeds pixel limit/i.test(detail)) {
    return new IngestError('decompression_bomb', `${kind.label} would decode to more than the limit of ${limits.maxPixels} pixels`, { cause: e });
  }
  if (/timeout/i.test(detail)) {
    return new IngestError('timeout', `decoding took longer than the limit of ${limits.decodeTimeoutMs} ms`, { cause: e });
  }
  if (kind.format === 'heic' || kind.format === 'heif') {
    // The prebuilt libvips decodes AVIF but has no HEVC decoder, so most HEIC photos land here.
    return new IngestError('unsupported_type', `could not ${action} ${kind.label} (HEVC-coded HEIF is not supported by this build): ${detail}`, { cause: e });
  }
  return new IngestError('corrupt', `could not ${action} ${kind.label}${truncationHint(bytes, kind)}: ${detail}`, { cause: e });
}

/**
 * libpng's "read error" does not say why; a missing end marker usually does. Only a hint: a
 * file can end properly and still be corrupt inside.
 */
function truncationHint(bytes: Uint8Array, kind: SniffResult): string {
  if (kind.format === 'png' && !endsWithIend(bytes)) return ' (the file is truncated: it does not end with an IEND chunk)';
  // FF D9 cannot occur inside entropy-coded data, so its absence near the end means a cut file.
  const tail = bytes.subarray(Math.max(0, bytes.length - 1024));
  if (kind.format === 'jpeg' && !hasPair(tail, 0xff, 0xd9)) return ' (the file looks truncated: no end-of-image marker)';
  return '';
}

function endsWithIend(b: Uint8Array): boolean {
  const iend = [0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82];
  // Trailing bytes after IEND are common and harmless, so look for it anywhere in the tail.
  const tail = b.subarray(Math.max(0, b.length - 4096));
  outer: for (let i = 0; i + iend.length <= tail.length; i++) {
    for (let k = 0; k < iend.length; k++) if (tail[i + k] !== iend[k]) continue outer;
    return true;
  }
  return false;
}

function hasPair(b: Uint8Array, first: number, second: number): boolean {
  for (let i = 0; i + 1 < b.length; i++) if (b[i] === first && b[i + 1] === second) return true;
  return false;
}

/**
 * sharp's own timeout stops libvips between tiles but counts whole seconds and does not cover
 * the header read; this timer bounds the whole call. Work that loses the race keeps running in
 * libvips' threads until sharp's timeout ends it; its result is dropped.
 */
function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  // The losing promise must not surface later as an unhandled rejection (that would crash).
  work.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new IngestError('timeout', `decoding took longer than the limit of ${ms} ms`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

function fsErrorText(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return 'file does not exist';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ELOOP':
      return 'too many levels of symbolic links';
    case 'EISDIR':
      return 'is a folder, not a file';
    default:
      return `cannot read the file (${code ?? firstLine(e)})`;
  }
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

function withArticle(label: string): string {
  if (/(text|data)$/.test(label)) return label;
  return /^([AEIOU]|HTML|XML|ELF|SVG|MP)/i.test(label) ? `an ${label}` : `a ${label}`;
}
