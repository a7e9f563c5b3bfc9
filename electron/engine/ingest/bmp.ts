// A small BMP decoder, because libvips (and so sharp) has no BMP loader.
//
// BMP headers are trivially easy to forge, so every size and offset is checked against the
// buffer before it is used, and the declared pixel count is checked against the limit before
// the output is allocated: a 60-byte file claiming 2^31 × 2^31 pixels must produce an error,
// not a RangeError from a typed array or an attempt to allocate gigabytes.
//
// Supported: BITMAPCOREHEADER (OS/2 1.x), BITMAPINFOHEADER and its V2/V3/V4/V5 extensions;
// 1/4/8-bit paletted, 16-bit (5-5-5 or bit fields), 24-bit, 32-bit (BI_RGB or bit fields);
// bottom-up and top-down rows. Rejected with a plain error: RLE4/RLE8, embedded JPEG/PNG,
// CMYK, OS/2 2.x headers. Colour-space fields and embedded ICC profiles of V4/V5 headers are
// ignored and the pixels are taken as sRGB, which is what nearly every writer means.

import { IngestError } from './errors.js';

export interface BmpImage {
  width: number;
  height: number;
  bitsPerPixel: number;
  /** True when an alpha channel was present and used (and flattened onto white). */
  hasAlpha: boolean;
  /** width*height*3 bytes, top row first, sRGB, alpha flattened onto white. */
  rgb: Uint8Array;
}

const FILE_HEADER_SIZE = 14;
const CORE_HEADER_SIZE = 12;
const INFO_HEADER_SIZES = [40, 52, 56, 108, 124];
const OS2_V2_HEADER_SIZES = [16, 64];

const BI_RGB = 0;
const BI_BITFIELDS = 3;
const BI_ALPHABITFIELDS = 6;
const UNSUPPORTED_COMPRESSION: Record<number, string> = {
  1: 'RLE8',
  2: 'RLE4',
  4: 'embedded JPEG',
  5: 'embedded PNG',
  11: 'CMYK',
  12: 'CMYK RLE8',
  13: 'CMYK RLE4',
};

interface Header {
  width: number;
  height: number;
  topDown: boolean;
  bitsPerPixel: number;
  compression: number;
  dibSize: number;
  pixelOffset: number;
  colorsUsed: number;
  isCore: boolean;
}

export function decodeBmp(bytes: Uint8Array, maxPixels: number): BmpImage {
  const header = readHeader(bytes);
  const { width, height, bitsPerPixel } = header;
  if (width * height > maxPixels) {
    throw new IngestError(
      'decompression_bomb',
      `BMP header declares ${width}×${height} = ${width * height} pixels, over the limit of ${maxPixels}`,
    );
  }

  // Palette and masks come before the pixels in the file, so their errors are reported first.
  const palette = bitsPerPixel <= 8 ? readPalette(bytes, header) : null;
  const masks = bitsPerPixel === 16 || bitsPerPixel === 32 ? readMasks(bytes, header) : null;

  const stride = Math.floor((width * bitsPerPixel + 31) / 32) * 4;
  // Some writers leave off the padding of the last row; accepting that costs nothing.
  const lastRowBytes = Math.ceil((width * bitsPerPixel) / 8);
  const pixelBytes = stride * (height - 1) + lastRowBytes;
  if (header.pixelOffset + pixelBytes > bytes.length) {
    throw new IngestError(
      'corrupt',
      `truncated BMP: ${width}×${height} at ${bitsPerPixel} bits per pixel needs ${pixelBytes} bytes of pixel data ` +
        `from offset ${header.pixelOffset}, but the file is only ${bytes.length} bytes`,
    );
  }

  const rgb = new Uint8Array(width * height * 3);
  const rowStart = (y: number) => header.pixelOffset + (header.topDown ? y : height - 1 - y) * stride;
  let hasAlpha = false;
  if (palette) decodePaletted(bytes, header, palette, rowStart, rgb);
  else if (masks) hasAlpha = decodeMasked(bytes, header, masks, rowStart, rgb);
  else decode24(bytes, width, height, rowStart, rgb);
  return { width, height, bitsPerPixel, hasAlpha, rgb };
}

function readHeader(bytes: Uint8Array): Header {
  need(bytes, FILE_HEADER_SIZE + 4, 'file header');
  if (bytes[0] !== 0x42 || bytes[1] !== 0x4d) throw new IngestError('corrupt', 'not a BMP file: missing "BM" signature');
  const pixelOffset = u32(bytes, 10);
  const dibSize = u32(bytes, 14);
  if (OS2_V2_HEADER_SIZES.includes(dibSize)) {
    throw new IngestError('unsupported_type', 'OS/2 2.x BMP headers are not supported');
  }
  const isCore = dibSize === CORE_HEADER_SIZE;
  if (!isCore && !INFO_HEADER_SIZES.includes(dibSize)) {
    throw new IngestError('corrupt', `BMP header size ${dibSize} is not a known BMP header`);
  }
  need(bytes, FILE_HEADER_SIZE + dibSize, 'header');

  const h = FILE_HEADER_SIZE;
  const width = isCore ? u16(bytes, h + 4) : i32(bytes, h + 4);
  const rawHeight = isCore ? u16(bytes, h + 6) : i32(bytes, h + 8);
  const bitsPerPixel = isCore ? u16(bytes, h + 10) : u16(bytes, h + 14);
  const compression = isCore ? BI_RGB : u32(bytes, h + 16);
  const colorsUsed = isCore ? 0 : u32(bytes, h + 32);

  if (width <= 0 || rawHeight === 0) throw new IngestError('corrupt', `BMP header has impossible dimensions ${width}×${rawHeight}`);
  const unsupported = UNSUPPORTED_COMPRESSION[compression];
  if (unsupported) throw new IngestError('unsupported_type', `unsupported BMP compression (${unsupported})`);
  if (compression !== BI_RGB && compression !== BI_BITFIELDS && compression !== BI_ALPHABITFIELDS) {
    throw new IngestError('corrupt', `unknown BMP compression ${compression}`);
  }
  if (![1, 4, 8, 16, 24, 32].includes(bitsPerPixel)) {
    throw new IngestError('unsupported_type', `unsupported BMP bit depth ${bitsPerPixel}`);
  }
  if (compression !== BI_RGB && bitsPerPixel !== 16 && bitsPerPixel !== 32) {
    throw new IngestError('corrupt', `BMP bit-field compression needs 16 or 32 bits per pixel, header says ${bitsPerPixel}`);
  }
  if (pixelOffset < FILE_HEADER_SIZE + dibSize) {
    throw new IngestError('corrupt', `BMP pixel data offset ${pixelOffset} points inside the header`);
  }
  return {
    width,
    height: Math.abs(rawHeight),
    topDown: rawHeight < 0,
    bitsPerPixel,
    compression,
    dibSize,
    pixelOffset,
    colorsUsed,
    isCore,
  };
}

// ---------------------------------------------------------------------------------------------
// Paletted (1, 4, 8 bits)

/** Palette as packed RGB triplets. */
function readPalette(bytes: Uint8Array, header: Header): Uint8Array {
  const maxColors = 1 << header.bitsPerPixel;
  // colorsUsed beyond 2^bpp can never be indexed, so only the reachable part is read.
  const count = header.colorsUsed === 0 ? maxColors : Math.min(header.colorsUsed, maxColors);
  const entrySize = header.isCore ? 3 : 4;
  const start = FILE_HEADER_SIZE + header.dibSize;
  if (start + count * entrySize > bytes.length) {
    throw new IngestError('corrupt', `truncated BMP: the palette of ${count} colours runs past the end of the file`);
  }
  const palette = new Uint8Array(count * 3);
  for (let i = 0; i < count; i++) {
    const p = start + i * entrySize;
    palette[i * 3] = bytes[p + 2];
    palette[i * 3 + 1] = bytes[p + 1];
    palette[i * 3 + 2] = bytes[p];
  }
  return palette;
}

function decodePaletted(
  bytes: Uint8Array,
  header: Header,
  palette: Uint8Array,
  rowStart: (y: number) => number,
  out: Uint8Array,
): void {
  const { width, height, bitsPerPixel: bpp } = header;
  const colors = palette.length / 3;
  const perByte = 8 / bpp;
  const mask = (1 << bpp) - 1;
  let o = 0;
  for (let y = 0; y < height; y++) {
    const row = rowStart(y);
    for (let x = 0; x < width; x++) {
      const byte = bytes[row + Math.floor(x / perByte)];
      const shift = 8 - bpp * ((x % perByte) + 1);
      const index = (byte >> shift) & mask;
      // An index past a short palette is a writer bug, not an attack; black is what browsers show.
      if (index < colors) {
        out[o] = palette[index * 3];
        out[o + 1] = palette[index * 3 + 1];
        out[o + 2] = palette[index * 3 + 2];
      }
      o += 3;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 24-bit

function decode24(bytes: Uint8Array, width: number, height: number, rowStart: (y: number) => number, out: Uint8Array): void {
  let o = 0;
  for (let y = 0; y < height; y++) {
    let p = rowStart(y);
    for (let x = 0; x < width; x++, p += 3, o += 3) {
      out[o] = bytes[p + 2];
      out[o + 1] = bytes[p + 1];
      out[o + 2] = bytes[p];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 16 and 32 bits: channels described by bit masks

interface Channel {
  mask: number;
  shift: number;
  /** Maximum channel value, (2^bits) - 1; 0 when the channel is absent. */
  max: number;
}

interface Masks {
  r: Channel;
  g: Channel;
  b: Channel;
  a: Channel;
}

function readMasks(bytes: Uint8Array, header: Header): Masks {
  const { bitsPerPixel: bpp, compression, dibSize } = header;
  let r: number, g: number, b: number, a: number;
  if (compression === BI_RGB) {
    // BI_RGB ignores any masks in V4/V5 headers, by the specification.
    [r, g, b, a] = bpp === 16 ? [0x7c00, 0x03e0, 0x001f, 0] : [0x00ff0000, 0x0000ff00, 0x000000ff, 0xff000000];
  } else {
    // BITMAPINFOHEADER keeps the masks right after the header; V2 and later keep them inside it.
    const at = FILE_HEADER_SIZE + 40;
    const withAlpha = compression === BI_ALPHABITFIELDS || dibSize >= 56;
    need(bytes, at + (withAlpha ? 16 : 12), 'bit-field masks');
    [r, g, b] = [u32(bytes, at), u32(bytes, at + 4), u32(bytes, at + 8)];
    a = withAlpha ? u32(bytes, at + 12) : 0;
    if (dibSize === 40 && header.pixelOffset < at + (withAlpha ? 16 : 12)) {
      throw new IngestError('corrupt', `BMP pixel data offset ${header.pixelOffset} overlaps the bit-field masks`);
    }
  }
  return { r: channel(r, bpp, 'red'), g: channel(g, bpp, 'green'), b: channel(b, bpp, 'blue'), a: channel(a, bpp, 'alpha') };
}

function channel(mask: number, bpp: number, name: string): Channel {
  if (mask === 0) return { mask: 0, shift: 0, max: 0 };
  if (bpp < 32 && mask >>> bpp !== 0) {
    throw new IngestError('corrupt', `BMP ${name} mask 0x${mask.toString(16)} does not fit in ${bpp} bits per pixel`);
  }
  let shift = 0;
  while (((mask >>> shift) & 1) === 0) shift++;
  const bits = mask >>> shift;
  if ((bits & (bits + 1)) !== 0) {
    throw new IngestError('corrupt', `BMP ${name} mask 0x${mask.toString(16)} is not a contiguous run of bits`);
  }
  return { mask, shift, max: bits };
}

/** Scale a channel of any width to 0..255, rounding to nearest (5 bits: 31 → 255, 16 → 132). */
function scaler(c: Channel): (px: number) => number {
  if (c.max === 0) return () => 0;
  if (c.max === 255) return (px) => (px & c.mask) >>> c.shift;
  if (c.max <= 0xffff) {
    const lut = new Uint8Array(c.max + 1);
    for (let v = 0; v <= c.max; v++) lut[v] = Math.round((v * 255) / c.max);
    return (px) => lut[(px & c.mask) >>> c.shift];
  }
  return (px) => Math.round((((px & c.mask) >>> c.shift) * 255) / c.max);
}

/** Returns whether alpha was used. */
function decodeMasked(
  bytes: Uint8Array,
  header: Header,
  masks: Masks,
  rowStart: (y: number) => number,
  out: Uint8Array,
): boolean {
  const { width, height, bitsPerPixel: bpp } = header;
  const step = bpp / 8;
  const read = bpp === 16 ? (p: number) => u16(bytes, p) : (p: number) => u32(bytes, p);
  const [r, g, b] = [scaler(masks.r), scaler(masks.g), scaler(masks.b)];

  // Many writers leave the alpha byte at 0 meaning "unused"; honouring it would turn those
  // images pure white. Like browsers, treat an all-zero alpha channel as absent.
  let useAlpha = false;
  if (masks.a.max !== 0) {
    for (let y = 0; y < height && !useAlpha; y++) {
      for (let x = 0, p = rowStart(y); x < width; x++, p += step) {
        if ((read(p) & masks.a.mask) !== 0) {
          useAlpha = true;
          break;
        }
      }
    }
  }
  const a = scaler(masks.a);

  let o = 0;
  for (let y = 0; y < height; y++) {
    let p = rowStart(y);
    for (let x = 0; x < width; x++, p += step, o += 3) {
      const px = read(p);
      if (useAlpha) {
        // Same integer formula as libvips' flatten, so a BMP and a PNG of the same RGBA
        // pixels decode to identical bytes.
        const alpha = a(px);
        const back = 255 * (255 - alpha);
        out[o] = Math.floor((r(px) * alpha + back) / 255);
        out[o + 1] = Math.floor((g(px) * alpha + back) / 255);
        out[o + 2] = Math.floor((b(px) * alpha + back) / 255);
      } else {
        out[o] = r(px);
        out[o + 1] = g(px);
        out[o + 2] = b(px);
      }
    }
  }
  return useAlpha;
}

// ---------------------------------------------------------------------------------------------
// Bounds-checked little-endian reads. Callers check ranges up front; these are the last guard.

function need(bytes: Uint8Array, end: number, what: string): void {
  if (end > bytes.length) {
    throw new IngestError('corrupt', `truncated BMP: the ${what} needs ${end} bytes, the file is only ${bytes.length}`);
  }
}

function u16(b: Uint8Array, off: number): number {
  if (off + 2 > b.length) throw new IngestError('corrupt', 'truncated BMP: read past the end of the file');
  return b[off] | (b[off + 1] << 8);
}

function u32(b: Uint8Array, off: number): number {
  if (off + 4 > b.length) throw new IngestError('corrupt', 'truncated BMP: read past the end of the file');
  return (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0;
}

function i32(b: Uint8Array, off: number): number {
  return u32(b, off) | 0;
}
