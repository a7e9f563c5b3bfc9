// Image ingest: sniffing, decoding (sharp and the BMP decoder), limits, folder walking, and
// robustness against broken and hostile files.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { decodeBmp } from '../electron/engine/ingest/bmp.js';
import {
  DEFAULT_LIMITS,
  IngestError,
  decodeImage,
  readAndDecodeImage,
  resizeForEncoder,
  type DecodedImage,
  type IngestLimits,
} from '../electron/engine/ingest/image.js';
import { sniff } from '../electron/engine/ingest/sniff.js';
import { countMedia, walkMedia } from '../electron/engine/ingest/walk.js';
import {
  encodeBmp,
  gradientNoise,
  makeBombPng,
  makeBrokenFolder,
  makeOrientedJpeg,
  makeWav,
  mulberry32,
  palettedPattern,
  randomBytes,
  type BmpSpec,
} from './fixtures/make-fixtures.js';
import { sharedData } from './helpers/repo-root.js';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-ingest-'));

/** Resolves to the IngestError a promise rejects with; fails the test on success or any other error. */
async function ingestError(p: Promise<unknown>): Promise<IngestError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof IngestError, `expected an IngestError, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    return e;
  }
  assert.fail('expected an IngestError, but decoding succeeded');
}

function pngOf(rgb: Uint8Array, width: number, height: number, channels: 3 | 4 = 3): Promise<Buffer> {
  return sharp(rgb, { raw: { width, height, channels } }).png().toBuffer();
}

// ---------------------------------------------------------------------------------------------
// The broken folder

test('every fixture of the broken folder gives exactly its expected result', async () => {
  const dir = tmp();
  const fixtures = await makeBrokenFolder(dir);
  assert.ok(fixtures.length >= 16);
  for (const f of fixtures) {
    const bytes = fs.readFileSync(f.path);
    for (const [how, run] of [
      ['readAndDecodeImage', () => readAndDecodeImage(f.path)],
      ['decodeImage', () => decodeImage(bytes)],
    ] as const) {
      const label = `${f.name} (${f.note}) via ${how}`;
      if (f.expect === 'ok') {
        const img = await run().catch((e: unknown) => assert.fail(`${label}: ${String(e)}`));
        assert.equal(img.format, f.format, label);
        assert.equal(img.width, f.width, label);
        assert.equal(img.height, f.height, label);
        assert.equal(img.rgb.length, img.width * img.height * 3, label);
        assert.equal(img.bytes, bytes.length, label);
      } else {
        const err = await ingestError(run());
        assert.equal(err.code, f.expect, `${label}: ${err.message}`);
        assert.ok(err.message.length > 10, `${label}: message says why`);
        assert.ok(!err.message.includes(dir), `${label}: the message leaves the path to the caller`);
      }
    }
  }
});

test('error messages name the reason plainly', async () => {
  const dir = tmp();
  const byName = Object.fromEntries((await makeBrokenFolder(dir)).map((f) => [f.name, f.path]));
  const message = async (name: string) => (await ingestError(readAndDecodeImage(byName[name]))).message;
  assert.match(await message('sine.wav'), /^audio \(WAV\) is not an image$/);
  assert.match(await message('text-named.png'), /plain text/);
  assert.match(await message('bomb.png'), /50000×50000/);
  assert.match(await message('empty.jpg'), /empty/);
  assert.match(await message('truncated.png'), /truncated/);
  assert.match(await message('truncated.jpg'), /premature end|truncated/);
  assert.match(await message('random-bytes.jpg'), /unrecognised/);
});

test("why failOn is strict: with 'none' sharp passes 60%-truncated files off as images", async () => {
  const dir = tmp();
  for (const f of (await makeBrokenFolder(dir)).filter((x) => x.name.startsWith('truncated.'))) {
    const bytes = fs.readFileSync(f.path);
    await assert.doesNotReject(sharp(bytes, { failOn: 'none' }).raw().toBuffer(), `${f.name} with failOn 'none'`);
    await assert.rejects(sharp(bytes, { failOn: 'truncated' }).raw().toBuffer(), `${f.name} with failOn 'truncated'`);
  }
});

test('the first frame of an animated GIF is decoded', async () => {
  const dir = tmp();
  const gif = (await makeBrokenFolder(dir)).find((f) => f.name === 'animated.gif')!;
  const img = await readAndDecodeImage(gif.path);
  const [r, g, b] = img.rgb;
  assert.ok(r > 200 && g < 60 && b < 60, `first frame is red, got ${r},${g},${b}`);
});

test('sha256 is the hash of the original bytes', async () => {
  const dir = tmp();
  for (const f of (await makeBrokenFolder(dir)).filter((x) => x.expect === 'ok')) {
    const img = await readAndDecodeImage(f.path);
    assert.equal(img.sha256, createHash('sha256').update(fs.readFileSync(f.path)).digest('hex'), f.name);
  }
});

// ---------------------------------------------------------------------------------------------
// EXIF orientation

test('EXIF orientation 6 swaps width and height and really rotates the pixels', async () => {
  const img = await decodeImage(await makeOrientedJpeg(96, 64, 6));
  assert.equal(img.orientation, 6);
  assert.deepEqual([img.width, img.height], [64, 96]);
  // The stored top-left red block ends up at the top-right after a 90° clockwise turn.
  assert.ok(isRed(img, img.width - 8, 8), 'top-right is red');
  assert.ok(!isRed(img, 8, 8), 'top-left is not red');
});

test('every EXIF orientation puts the marked corner where it belongs', async () => {
  const corner: Record<number, 'tl' | 'tr' | 'br' | 'bl'> = { 1: 'tl', 2: 'tr', 3: 'br', 4: 'bl', 5: 'tl', 6: 'tr', 7: 'br', 8: 'bl' };
  for (let o = 1; o <= 8; o++) {
    const img = await decodeImage(await makeOrientedJpeg(96, 64, o));
    assert.equal(img.orientation, o);
    assert.deepEqual([img.width, img.height], o >= 5 ? [64, 96] : [96, 64], `orientation ${o}`);
    const at = { tl: [8, 8], tr: [img.width - 8, 8], br: [img.width - 8, img.height - 8], bl: [8, img.height - 8] };
    for (const [name, [x, y]] of Object.entries(at)) {
      assert.equal(isRed(img, x, y), name === corner[o], `orientation ${o}: ${name} corner`);
    }
  }
});

function isRed(img: DecodedImage, x: number, y: number): boolean {
  const i = (y * img.width + x) * 3;
  return img.rgb[i] > 200 && img.rgb[i + 1] < 60 && img.rgb[i + 2] < 60;
}

// ---------------------------------------------------------------------------------------------
// BMP decoder against sharp

/** Decodes `bmp` with our decoder and `png` with sharp; both must give the same bytes. */
async function assertSameAsPng(bmp: Uint8Array, png: Uint8Array, label: string): Promise<void> {
  const fromBmp = await decodeImage(bmp);
  const fromPng = await decodeImage(png);
  assert.equal(fromBmp.format, 'bmp', label);
  assert.deepEqual([fromBmp.width, fromBmp.height], [fromPng.width, fromPng.height], label);
  let maxDiff = 0;
  for (let i = 0; i < fromPng.rgb.length; i++) maxDiff = Math.max(maxDiff, Math.abs(fromBmp.rgb[i] - fromPng.rgb[i]));
  assert.equal(maxDiff, 0, `${label}: max abs diff`);
}

test('24-bit BMPs decode exactly like the same pixels as PNG', async () => {
  const [w, h] = [33, 17]; // odd width: every row needs padding
  const rgb = gradientNoise(w, h, 11);
  const png = await pngOf(rgb, w, h);
  const variants: [string, Partial<BmpSpec>][] = [
    ['bottom-up', {}],
    ['top-down', { topDown: true }],
    ['V4 header', { headerSize: 108 }],
    ['V5 header', { headerSize: 124 }],
    ['OS/2 core header', { headerSize: 12 }],
  ];
  for (const [name, extra] of variants) {
    await assertSameAsPng(encodeBmp({ kind: 'rgb24', width: w, height: h, rgb, ...extra } as BmpSpec), png, name);
  }
});

test('paletted BMPs (1, 4, 8 bits) decode exactly like the same pixels as PNG', async () => {
  const [w, h] = [37, 11];
  for (const [bpp, colours, headerSize] of [
    [1, 2, 40],
    [4, 16, 40],
    [4, 7, 40],
    [8, 256, 40],
    [8, 20, 40],
    [8, 256, 12],
    [8, 256, 124],
  ] as const) {
    const { palette, indices } = palettedPattern(w, h, colours, bpp * 100 + colours);
    const rgb = new Uint8Array(w * h * 3);
    indices.forEach((c, i) => rgb.set(palette.subarray(c * 3, c * 3 + 3), i * 3));
    const bmp = encodeBmp({ kind: 'paletted', bitsPerPixel: bpp, width: w, height: h, palette, indices, headerSize });
    await assertSameAsPng(bmp, await pngOf(rgb, w, h), `${bpp}-bit, ${colours} colours, header ${headerSize}`);
  }
});

test('16-bit BMPs (5-5-5 and 5-6-5 bit fields) decode exactly', async () => {
  const [w, h] = [13, 7]; // 26-byte rows: padded to 28
  const rnd = mulberry32(16);
  const expand = (v: number, bits: number) => Math.round((v * 255) / ((1 << bits) - 1));
  for (const [name, bits, masks, headerSize] of [
    ['5-5-5 BI_RGB', [5, 5, 5], undefined, 40],
    ['5-6-5 bit fields', [5, 6, 5], [0xf800, 0x07e0, 0x001f, 0], 40],
    ['5-6-5 bit fields, V5 header', [5, 6, 5], [0xf800, 0x07e0, 0x001f, 0], 124],
  ] as const) {
    const words = new Uint32Array(w * h);
    const rgb = new Uint8Array(w * h * 3);
    for (let i = 0; i < w * h; i++) {
      const [r, g, b] = bits.map((n) => Math.floor(rnd() * (1 << n)));
      words[i] = (r << (bits[1] + bits[2])) | (g << bits[2]) | b;
      rgb.set([expand(r, bits[0]), expand(g, bits[1]), expand(b, bits[2])], i * 3);
    }
    const bmp = encodeBmp({ kind: 'packed', bitsPerPixel: 16, width: w, height: h, words, masks: masks as BmpMasks, headerSize });
    await assertSameAsPng(bmp, await pngOf(rgb, w, h), name);
  }
});

type BmpMasks = [number, number, number, number] | undefined;

test('32-bit BMPs: opaque, and alpha flattened onto white exactly like sharp flattens a PNG', async () => {
  const [w, h] = [19, 9];
  const rnd = mulberry32(32);
  const rgba = new Uint8Array(w * h * 4).map(() => Math.floor(rnd() * 256));
  const pack = (order: 'bgra' | 'argb') => {
    const words = new Uint32Array(w * h);
    for (let i = 0; i < w * h; i++) {
      const [r, g, b, a] = rgba.subarray(i * 4, i * 4 + 4);
      words[i] = order === 'bgra' ? ((a << 24) | (r << 16) | (g << 8) | b) >>> 0 : ((r << 24) | (g << 16) | (b << 8) | a) >>> 0;
    }
    return words;
  };
  const rgbaPng = await pngOf(rgba, w, h, 4);

  // BI_RGB with a real alpha byte, V5 bit fields with an alpha mask, and BI_ALPHABITFIELDS.
  await assertSameAsPng(encodeBmp({ kind: 'packed', bitsPerPixel: 32, width: w, height: h, words: pack('bgra') }), rgbaPng, 'BI_RGB with alpha');
  const argbMasks: [number, number, number, number] = [0xff000000, 0x00ff0000, 0x0000ff00, 0x000000ff];
  for (const headerSize of [124, 40] as const) {
    const bmp = encodeBmp({ kind: 'packed', bitsPerPixel: 32, width: w, height: h, words: pack('argb'), masks: argbMasks, headerSize });
    await assertSameAsPng(bmp, rgbaPng, `bit fields with alpha, header ${headerSize}`);
  }

  // An all-zero alpha byte is the "unused" byte of old writers: the image is opaque.
  const opaque = pack('bgra').map((v) => v & 0x00ffffff);
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) rgb.set(rgba.subarray(i * 4, i * 4 + 3), i * 3);
  await assertSameAsPng(encodeBmp({ kind: 'packed', bitsPerPixel: 32, width: w, height: h, words: opaque }), await pngOf(rgb, w, h), 'BI_RGB, alpha byte unused');
  const bitfields = encodeBmp({ kind: 'packed', bitsPerPixel: 32, width: w, height: h, words: opaque, masks: [0xff0000, 0xff00, 0xff, 0] });
  await assertSameAsPng(bitfields, await pngOf(rgb, w, h), 'bit fields without alpha');
});

test('the same image as PNG and as BMP gives identical rgb (and different sha256)', async () => {
  const rgb = gradientNoise(64, 48, 7);
  const png = await decodeImage(await pngOf(rgb, 64, 48));
  const bmp = await decodeImage(encodeBmp({ kind: 'rgb24', width: 64, height: 48, rgb }));
  assert.deepEqual(bmp.rgb, png.rgb);
  assert.deepEqual(bmp.rgb, rgb);
  assert.notEqual(bmp.sha256, png.sha256);
});

// ---------------------------------------------------------------------------------------------
// Broken and hostile BMPs

const goodBmp = () => encodeBmp({ kind: 'rgb24', width: 33, height: 17, rgb: gradientNoise(33, 17, 3) });

function patched(bytes: Uint8Array, edit: (view: DataView) => void): Uint8Array {
  const copy = bytes.slice();
  edit(new DataView(copy.buffer));
  return copy;
}

test('a truncated BMP gives a corrupt error', async () => {
  const bmp = goodBmp();
  // Cutting only the last row's padding is tolerated (some writers omit it); one more byte is not.
  for (const keep of [bmp.length - 2, Math.floor(bmp.length * 0.6), 60, 54, 30, 20]) {
    const err = await ingestError(decodeImage(bmp.subarray(0, keep)));
    assert.equal(err.code, 'corrupt', `cut at ${keep}: ${err.message}`);
    assert.match(err.message, /truncated BMP/);
  }
});

test('a BMP whose header lies about its height gives a corrupt error', async () => {
  const liar = patched(goodBmp(), (v) => v.setInt32(22, 1000, true));
  const err = await ingestError(decodeImage(liar));
  assert.equal(err.code, 'corrupt');
  assert.match(err.message, /needs \d+ bytes of pixel data/);
});

test('a BMP claiming billions of pixels is refused before allocation', async () => {
  const huge = patched(goodBmp(), (v) => {
    v.setInt32(18, 0x7fffffff, true);
    v.setInt32(22, -0x7fffffff, true);
  });
  const err = await ingestError(decodeImage(huge));
  assert.equal(err.code, 'decompression_bomb');
  assert.match(err.message, /2147483647×2147483647/);
  const limits: IngestLimits = { ...DEFAULT_LIMITS, maxPixels: 100 };
  assert.equal((await ingestError(decodeImage(goodBmp(), limits))).code, 'decompression_bomb');
});

test('unsupported and malformed BMP headers give plain errors', async () => {
  const cases: [string, Uint8Array, string, RegExp][] = [
    ['RLE8', patched(goodBmp(), (v) => v.setUint32(30, 1, true)), 'unsupported_type', /unsupported BMP compression \(RLE8\)/],
    ['RLE4', patched(goodBmp(), (v) => v.setUint32(30, 2, true)), 'unsupported_type', /unsupported BMP compression \(RLE4\)/],
    ['embedded JPEG', patched(goodBmp(), (v) => v.setUint32(30, 4, true)), 'unsupported_type', /embedded JPEG/],
    ['unknown compression', patched(goodBmp(), (v) => v.setUint32(30, 99, true)), 'corrupt', /unknown BMP compression 99/],
    ['2 bits per pixel', patched(goodBmp(), (v) => v.setUint16(28, 2, true)), 'unsupported_type', /bit depth 2/],
    ['zero width', patched(goodBmp(), (v) => v.setInt32(18, 0, true)), 'corrupt', /impossible dimensions/],
    ['negative width', patched(goodBmp(), (v) => v.setInt32(18, -5, true)), 'corrupt', /impossible dimensions/],
    ['pixel offset inside header', patched(goodBmp(), (v) => v.setUint32(10, 20, true)), 'corrupt', /inside the header/],
    ['pixel offset past the end', patched(goodBmp(), (v) => v.setUint32(10, 0xfffffff0, true)), 'corrupt', /truncated BMP/],
    ['bit fields on 24-bit', patched(goodBmp(), (v) => v.setUint32(30, 3, true)), 'corrupt', /16 or 32 bits/],
  ];
  const words = new Uint32Array(4 * 4);
  const masked = (masks: [number, number, number, number]) => encodeBmp({ kind: 'packed', bitsPerPixel: 16, width: 4, height: 4, words, masks });
  cases.push(['non-contiguous mask', masked([0xf00f, 0x07e0, 0x001f, 0]), 'corrupt', /not a contiguous run/]);
  cases.push(['mask wider than the pixel', masked([0x1f0000, 0x07e0, 0x001f, 0]), 'corrupt', /does not fit in 16 bits/]);
  const paletted = encodeBmp({ kind: 'paletted', bitsPerPixel: 8, width: 4, height: 4, ...palettedPattern(4, 4, 256, 1) });
  cases.push(['palette past the end', paletted.subarray(0, 14 + 40 + 100), 'corrupt', /palette of 256 colours runs past the end/]);

  for (const [name, bytes, code, message] of cases) {
    const err = await ingestError(decodeImage(bytes));
    assert.equal(err.code, code, `${name}: ${err.message}`);
    assert.match(err.message, message, name);
  }
});

test('the BMP decoder throws nothing but IngestError on 3,000 header mutations', () => {
  const rnd = mulberry32(2024);
  const seeds = [
    goodBmp(),
    encodeBmp({ kind: 'paletted', bitsPerPixel: 4, width: 9, height: 5, ...palettedPattern(9, 5, 16, 2) }),
    encodeBmp({ kind: 'packed', bitsPerPixel: 32, width: 5, height: 5, words: new Uint32Array(25).fill(0x80ff0000), masks: [0xff0000, 0xff00, 0xff, 0xff000000], headerSize: 124 }),
  ];
  let decoded = 0;
  for (let i = 0; i < 3000; i++) {
    const bytes = seeds[i % seeds.length].slice();
    // Hit the header hard: that is where the sizes and offsets live.
    for (let k = 0, n = 1 + Math.floor(rnd() * 4); k < n; k++) {
      const at = Math.floor(rnd() * Math.min(bytes.length, 14 + 124 + 16));
      bytes[at] = rnd() < 0.5 ? bytes[at] ^ (1 << Math.floor(rnd() * 8)) : Math.floor(rnd() * 256);
    }
    const cut = rnd() < 0.2 ? bytes.subarray(0, Math.floor(rnd() * bytes.length)) : bytes;
    try {
      const img = decodeBmp(cut, 1_000_000);
      assert.equal(img.rgb.length, img.width * img.height * 3);
      decoded++;
    } catch (e) {
      assert.ok(e instanceof IngestError, `mutation ${i}: ${String(e)}`);
    }
  }
  assert.ok(decoded > 100, `some mutations still decode (${decoded})`);
});

// ---------------------------------------------------------------------------------------------
// Limits and the file-reading path

test('too large: refused from stat before reading, and from the byte count', async () => {
  const dir = tmp();
  const file = path.join(dir, 'big.png');
  fs.writeFileSync(file, await pngOf(gradientNoise(64, 64, 1), 64, 64));
  const limits: IngestLimits = { ...DEFAULT_LIMITS, maxFileBytes: 100 };
  const viaFile = await ingestError(readAndDecodeImage(file, limits));
  assert.equal(viaFile.code, 'too_large');
  assert.match(viaFile.message, /over the limit of 100 bytes/);
  assert.equal((await ingestError(decodeImage(fs.readFileSync(file), limits))).code, 'too_large');
});

test('unreadable paths: a missing file, a folder, a FIFO (refused, not opened: opening would block)', async () => {
  const dir = tmp();
  const missing = await ingestError(readAndDecodeImage(path.join(dir, 'nope.jpg')));
  assert.equal(missing.code, 'unreadable');
  assert.match(missing.message, /does not exist/);
  const folder = await ingestError(readAndDecodeImage(dir));
  assert.equal(folder.code, 'unreadable');
  assert.match(folder.message, /folder/);

  const fifo = path.join(dir, 'pipe.jpg');
  try {
    execFileSync('mkfifo', [fifo]);
  } catch {
    return; // no mkfifo on this system
  }
  const err = await ingestError(readAndDecodeImage(fifo));
  assert.equal(err.code, 'unreadable');
  assert.match(err.message, /not a regular file/);
  const walked: string[] = [];
  for await (const e of walkMedia([dir])) walked.push(e.path);
  assert.deepEqual(walked, [], 'a FIFO inside a folder is skipped');
  const explicit: { path: string; error?: string }[] = [];
  for await (const e of walkMedia([fifo])) explicit.push(e);
  assert.deepEqual(explicit, [{ path: fifo, error: 'not a regular file or folder' }]);
});

test('a decode that runs past the time limit gives timeout', async () => {
  const big = await sharp({ create: { width: 3000, height: 3000, channels: 3, background: '#336699' } })
    .png({ compressionLevel: 9 })
    .toBuffer();
  const err = await ingestError(decodeImage(big, { ...DEFAULT_LIMITS, decodeTimeoutMs: 1 }));
  assert.equal(err.code, 'timeout');
  assert.match(err.message, /longer than the limit of 1 ms/);
});

test('sharp pixel limit and header check agree on the boundary', async () => {
  const png = await pngOf(gradientNoise(40, 25, 1), 40, 25);
  assert.equal((await decodeImage(png, { ...DEFAULT_LIMITS, maxPixels: 1000 })).width, 40);
  const err = await ingestError(decodeImage(png, { ...DEFAULT_LIMITS, maxPixels: 999 }));
  assert.equal(err.code, 'decompression_bomb');
  assert.match(err.message, /40×25/);
  assert.equal((await ingestError(decodeImage(makeBombPng(7000, 7000)))).code, 'decompression_bomb');
});

test('greyscale, grey+alpha, 16-bit, palette and CMYK inputs all become 8-bit sRGB RGB', async () => {
  const [w, h] = [24, 16];
  const rgba = new Uint8Array(w * h * 4).map((_, i) => (i * 37) % 256);
  const base = () => sharp(rgba, { raw: { width: w, height: h, channels: 4 } });
  const inputs: Record<string, Buffer> = {
    grey: await base().removeAlpha().toColourspace('b-w').png().toBuffer(),
    greyAlpha: await base().toColourspace('b-w').png().toBuffer(),
    rgb16: await base().toColourspace('rgb16').png().toBuffer(),
    palette: await base().png({ palette: true }).toBuffer(),
    cmyk: await base().removeAlpha().toColourspace('cmyk').jpeg().toBuffer(),
    tiff16: await base().toColourspace('rgb16').tiff().toBuffer(),
  };
  for (const [name, bytes] of Object.entries(inputs)) {
    const img = await decodeImage(bytes);
    assert.deepEqual([img.width, img.height, img.rgb.length], [w, h, w * h * 3], name);
  }
  // Fully transparent pixels flatten to white.
  const clear = await sharp({ create: { width: 4, height: 4, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } }).png().toBuffer();
  assert.ok((await decodeImage(clear)).rgb.every((v) => v === 255));
});

// ---------------------------------------------------------------------------------------------
// Sniffing

test('sniff recognises types from their bytes', () => {
  const bytes = (...parts: (string | number[])[]) =>
    new Uint8Array(parts.flatMap((p) => (typeof p === 'string' ? [...p].map((c) => c.charCodeAt(0)) : p)));
  const u32be = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  const ftyp = (major: string, ...compat: string[]) => bytes(u32be(16 + 4 * compat.length), 'ftyp', major, [0, 0, 0, 0], ...compat);
  const mp3Frame = [0xff, 0xfb, 0x90, 0x00, ...new Array<number>(413).fill(0)]; // MPEG-1 Layer III, 128 kb/s, 44.1 kHz: 417 bytes
  const cases: [string, Uint8Array, string, string | null][] = [
    ['JPEG', bytes([0xff, 0xd8, 0xff, 0xe0]), 'jpeg', 'image'],
    ['PNG', bytes([0x89], 'PNG', [0x0d, 0x0a, 0x1a, 0x0a]), 'png', 'image'],
    ['GIF87a', bytes('GIF87a'), 'gif', 'image'],
    ['GIF89a', bytes('GIF89a'), 'gif', 'image'],
    ['WebP', bytes('RIFF', [0, 0, 0, 0], 'WEBPVP8 '), 'webp', 'image'],
    ['BMP', encodeBmp({ kind: 'rgb24', width: 1, height: 1, rgb: new Uint8Array(3) }), 'bmp', 'image'],
    ['TIFF LE', bytes('II', [0x2a, 0]), 'tiff', 'image'],
    ['TIFF BE', bytes('MM', [0, 0x2a]), 'tiff', 'image'],
    ['AVIF', ftyp('avif', 'mif1', 'miaf'), 'avif', 'image'],
    ['AVIF via compatible brand', ftyp('mif1', 'avif'), 'avif', 'image'],
    ['HEIC', ftyp('heic', 'mif1'), 'heic', 'image'],
    ['WAV', makeWav(440, 0.01, 8000), 'wav', 'audio'],
    ['MP3 with ID3', bytes('ID3', [4, 0, 0]), 'mp3', 'audio'],
    ['MP3 frame sync', bytes(mp3Frame, mp3Frame), 'mp3', 'audio'],
    ['Ogg Vorbis', bytes('OggS', new Array<number>(22).fill(0), [1, 30], [1], 'vorbis'), 'ogg', 'audio'],
    ['Ogg Theora', bytes('OggS', new Array<number>(22).fill(0), [1, 42], [0x80], 'theora'), 'ogg', 'video'],
    ['FLAC', bytes('fLaC', [0, 0, 0, 34]), 'flac', 'audio'],
    ['MP4', ftyp('isom', 'iso2', 'avc1', 'mp41'), 'mp4', 'video'],
    ['M4A', ftyp('M4A ', 'isom'), 'm4a', 'audio'],
    ['MOV', ftyp('qt  '), 'mov', 'video'],
    ['WebM', bytes([0x1a, 0x45, 0xdf, 0xa3, 0x9f, 0x42, 0x86, 0x81, 0x01, 0x42, 0x82, 0x84], 'webm'), 'webm', 'video'],
    ['Matroska', bytes([0x1a, 0x45, 0xdf, 0xa3, 0x9f, 0x42, 0x86, 0x81, 0x01, 0x42, 0x82, 0x88], 'matroska'), 'mkv', 'video'],
    ['PDF', bytes('%PDF-1.7\n'), 'pdf', null],
    ['ZIP', bytes('PK', [3, 4, 20, 0]), 'zip', null],
    ['gzip', bytes([0x1f, 0x8b, 8, 0]), 'gzip', null],
    ['SVG', bytes('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>'), 'svg', 'image'],
    ['XML', bytes('<?xml version="1.0"?><root/>'), 'xml', null],
    ['HTML', bytes('<!DOCTYPE html><html><body><svg></svg></body></html>'), 'html', null],
    ['text', bytes('hello, world\n'), 'text', null],
    ['UTF-8 text', new TextEncoder().encode('naïve café ☕ — 写真\n'), 'text', null],
    ['text that starts like BMP', bytes('BM is a file signature\n'), 'text', null],
    ['empty', new Uint8Array(0), 'empty', null],
    ['random bytes', randomBytes(4096, 5), 'unknown', null],
    ['text with NULs', bytes('abc', [0], 'def'), 'unknown', null],
  ];
  for (const [name, data, format, modality] of cases) {
    const s = sniff(data);
    assert.equal(s.format, format, name);
    assert.equal(s.modality, modality, name);
    assert.ok(s.mime.includes('/'), name);
  }
});

test('sniff does not mistake random data for MPEG audio or other media', () => {
  const rnd = mulberry32(99);
  let media = 0;
  for (let i = 0; i < 2000; i++) {
    const data = new Uint8Array(2048).map(() => Math.floor(rnd() * 256));
    if (i % 2 === 0) data.set([0xff, 0xfb]); // a plausible MPEG sync, followed by garbage
    if (sniff(data).modality !== null) media++;
  }
  assert.ok(media <= 2, `${media} of 2000 random buffers sniffed as media`);
});

test('non-images are refused with the kind of file named', async () => {
  const cases: [Uint8Array, string, RegExp][] = [
    [new TextEncoder().encode('%PDF-1.4\n1 0 obj\n'), 'not_media', /PDF document/],
    [new Uint8Array([0x50, 0x4b, 3, 4, 20, 0, 0, 0]), 'not_media', /ZIP archive/],
    [new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'), 'unsupported_type', /SVG/],
    [new TextEncoder().encode('<!doctype html><title>x</title>'), 'not_media', /an HTML document/],
    [new Uint8Array([0, 0, 0, 20, ...new TextEncoder().encode('ftypisom'), 0, 0, 0, 0, ...new TextEncoder().encode('isom')]), 'unsupported_type', /^video \(MP4\) is not an image$/],
    [new Uint8Array([0xff, 0x0a, 0xfa, 0x7f]), 'unsupported_type', /JPEG XL images are not supported/],
  ];
  for (const [bytes, code, message] of cases) {
    const err = await ingestError(decodeImage(bytes));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
  }
});

// ---------------------------------------------------------------------------------------------
// Resizing for the encoder

test('resizeForEncoder: NHWC float32 in [0, 1], stretched to fill', async () => {
  const img = await decodeImage(await pngOf(gradientNoise(64, 48, 3), 64, 48));
  const out = await resizeForEncoder(img, 32, 40);
  assert.equal(out.length, 32 * 40 * 3);
  assert.ok(out.every((v) => v >= 0 && v <= 1));
  // Red ramps left to right in the source; after a fill resize it still spans nearly 0..1.
  assert.ok(out[0] < 0.1 && out[(32 - 1) * 3] > 0.9);

  const same = await resizeForEncoder(img, 64, 48);
  assert.ok(same.every((v, i) => Math.abs(v - img.rgb[i] / 255) < 1e-6), 'same size: just scaled to [0, 1]');

  const flat = await decodeImage(await sharp({ create: { width: 50, height: 30, channels: 3, background: { r: 51, g: 102, b: 204 } } }).png().toBuffer());
  const flatOut = await resizeForEncoder(flat, 7, 7);
  assert.ok(flatOut.every((v, i) => Math.abs(v - [51, 102, 204][i % 3] / 255) < 1e-6), 'a flat colour stays exact');
  await assert.rejects(resizeForEncoder(img, 0, 10), RangeError);
});

// ---------------------------------------------------------------------------------------------
// Walking folders

test('walkMedia: sorted, recursive, skips hidden and side files, survives loops and missing paths', async () => {
  const root = tmp();
  const write = (rel: string) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), 'x');
  };
  for (const f of ['b.jpg', 'a.png', 'C.gif', 'noext', '.hidden.jpg', '.cache/x.jpg', 'notes.txt', 'labels.JSON', 'sub/z.jpg', 'sub/deeper/y.jpg', 'sub/README.md']) write(f);
  fs.symlinkSync(root, path.join(root, 'loop'));
  fs.symlinkSync(path.join(root, 'sub'), path.join(root, 'sub', 'deeper', 'up'));
  fs.symlinkSync(path.join(root, 'missing-target'), path.join(root, 'dangling'));
  const rel = (entries: { path: string; error?: string }[]) => entries.map((e) => path.relative(root, e.path) + (e.error ? ` ! ${e.error}` : ''));
  const collect = async (paths: string[], opts?: { extensions?: 'all' }) => {
    const out: { path: string; error?: string }[] = [];
    for await (const e of walkMedia(paths, opts)) out.push(e);
    return out;
  };

  assert.deepEqual(rel(await collect([root])), [
    'C.gif',
    'a.png',
    'b.jpg',
    'dangling ! broken symbolic link (its target does not exist)',
    'noext',
    path.join('sub', 'deeper', 'y.jpg'),
    path.join('sub', 'z.jpg'),
  ]);

  assert.deepEqual(rel(await collect([root], { extensions: 'all' })).filter((p) => /txt|JSON|md$/.test(p)), [
    'labels.JSON',
    'notes.txt',
    path.join('sub', 'README.md'),
  ]);

  // Explicit paths keep the caller's order; an explicit hidden or side file is honoured; a
  // missing path is an entry, not an exception; a file given twice is yielded once.
  const explicit = await collect([path.join(root, 'sub', 'z.jpg'), path.join(root, 'nope.jpg'), path.join(root, '.hidden.jpg'), path.join(root, 'notes.txt'), path.join(root, 'sub', 'z.jpg')]);
  assert.deepEqual(rel(explicit), [path.join('sub', 'z.jpg'), 'nope.jpg ! does not exist', '.hidden.jpg', 'notes.txt']);

  assert.equal(await countMedia([root]), 7);
  assert.equal(await countMedia([root, path.join(root, 'nope')]), 8);
});

test('walkMedia reports an unlistable folder and keeps going', { skip: process.getuid?.() === 0 ? 'root can read any folder' : false }, async () => {
  const root = tmp();
  fs.mkdirSync(path.join(root, 'locked'));
  fs.writeFileSync(path.join(root, 'locked', 'a.jpg'), 'x');
  fs.writeFileSync(path.join(root, 'z.jpg'), 'x');
  fs.chmodSync(path.join(root, 'locked'), 0o000);
  try {
    const out: string[] = [];
    for await (const e of walkMedia([root])) out.push(path.relative(root, e.path) + (e.error ? ` ! ${e.error}` : ''));
    assert.deepEqual(out, ['locked ! cannot list folder: permission denied', 'z.jpg']);
  } finally {
    fs.chmodSync(path.join(root, 'locked'), 0o755);
  }
});

// ---------------------------------------------------------------------------------------------
// Fuzzing with real photos

test('decodeImage never throws anything but IngestError on 200 mutations of a real photo', async (t) => {
  const dir = sharedData('images', 'library_sample_photos');
  if (!fs.existsSync(dir)) return t.skip(`no sample photos at ${dir}`);
  // Every sample photo takes its turn as the original (they are small: 200 decodes take well
  // under a second).
  const photos = fs.readdirSync(dir).filter((f) => f.endsWith('.jpg')).sort().map((f) => new Uint8Array(fs.readFileSync(path.join(dir, f))));
  assert.ok(photos.length > 0);

  const rnd = mulberry32(0x5eed);
  const pick = (n: number) => Math.floor(rnd() * n);
  const outcomes: Record<string, number> = {};
  const started = performance.now();
  for (let i = 0; i < 200; i++) {
    let bytes = photos[i % photos.length].slice();
    const kind = i % 4;
    if (kind === 0) {
      for (let k = 0, n = 1 + pick(16); k < n; k++) bytes[pick(bytes.length)] ^= 1 << pick(8);
    } else if (kind === 1) {
      // Headers hold the sizes and tables: flip bits there specifically.
      for (let k = 0, n = 1 + pick(4); k < n; k++) bytes[pick(Math.min(bytes.length, 1024))] ^= 1 << pick(8);
    } else if (kind === 2) {
      bytes = bytes.subarray(0, pick(bytes.length));
    } else {
      const at = pick(bytes.length);
      bytes.fill(rnd() < 0.5 ? 0 : 0xff, at, at + 1 + pick(256));
    }
    try {
      const img = await decodeImage(bytes);
      assert.equal(img.rgb.length, img.width * img.height * 3);
      outcomes.ok = (outcomes.ok ?? 0) + 1;
    } catch (e) {
      assert.ok(e instanceof IngestError, `mutation ${i} (kind ${kind}) threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
      outcomes[e.code] = (outcomes[e.code] ?? 0) + 1;
    }
  }
  const seconds = (performance.now() - started) / 1000;
  t.diagnostic(`${photos.length} photos, 200 mutations: ${JSON.stringify(outcomes)} in ${seconds.toFixed(1)} s`);
  assert.ok(seconds < 10, `fuzzing took ${seconds.toFixed(1)} s`);
  assert.ok(outcomes.corrupt && outcomes.corrupt > 0, 'some mutations are caught as corrupt');
});

test('every library sample photo decodes', async (t) => {
  const dir = sharedData('images', 'library_sample_photos');
  if (!fs.existsSync(dir)) return t.skip(`no sample photos at ${dir}`);
  const files: string[] = [];
  for await (const e of walkMedia([dir])) {
    assert.equal(e.error, undefined, e.path);
    files.push(e.path);
  }
  assert.ok(files.length >= 20 && files.every((f) => f.endsWith('.jpg')), 'LICENSES.csv is skipped as a side file');
  for (const f of files) {
    const img = await readAndDecodeImage(f);
    assert.equal(img.rgb.length, img.width * img.height * 3, f);
  }
});
