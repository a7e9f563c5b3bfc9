// The default image encoder through its public seam (openImageEncoder / ImageEncoder):
// batching, normalisation, id stability, provider selection and input validation.
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';

import { ensureBuiltModel } from '../electron/engine/encoders/build.js';
import { encoderId, openImageEncoder, type ImageEncoder } from '../electron/engine/encoders/index.js';
import { shortReason } from '../electron/engine/encoders/providers.js';
import type { PreprocessingSpec } from '../electron/engine/encoders/manifest.js';
import { repoRoot, sharedData } from './helpers/repo-root.js';

const PHOTOS = ['skimage__astronaut.jpg', 'skimage__chelsea.jpg', 'opencv__fruits.jpg', 'skimage__rocket.jpg', 'opencv__building.jpg'];
const SIZE = 224;

let modelDir: string;
let pixels: Float32Array;

/** Decodes and resizes photos as the preprocessing spec says (fill, bilinear, [0, 1]). */
async function loadPhotos(files: readonly string[]): Promise<Float32Array> {
  const out = new Float32Array(files.length * SIZE * SIZE * 3);
  for (const [i, file] of files.entries()) {
    const raw = await sharp(sharedData('images', 'library_sample_photos', file))
      .removeAlpha()
      .resize(SIZE, SIZE, { fit: 'fill', kernel: 'linear' })
      .raw()
      .toBuffer();
    assert.equal(raw.length, SIZE * SIZE * 3, `${file} decoded to an unexpected size`);
    for (let j = 0; j < raw.length; j++) out[i * raw.length + j] = raw[j] / 255;
  }
  return out;
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

async function withEncoder<T>(config: Partial<Parameters<typeof openImageEncoder>[0]>, fn: (e: ImageEncoder) => Promise<T>): Promise<T> {
  const encoder = await openImageEncoder({ model: 'mobilenet_v2', device: 'cpu', batchSize: 32, modelDir, ...config });
  try {
    return await fn(encoder);
  } finally {
    await encoder.close();
  }
}

before(async () => {
  // Normally done by `npm install`; a no-op (hash check) when the build is current.
  const built = await ensureBuiltModel(path.join(repoRoot(), 'models', 'mobilenet_v2_backbone.model.json'), path.join(repoRoot(), 'models', 'build'));
  modelDir = path.dirname(built.onnxPath);
  pixels = await loadPhotos(PHOTOS);
});

const tempDirs: string[] = [];
after(() => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

test('describes itself: 1280-d image encoder at 224x224 with a content-derived id', async () => {
  await withEncoder({}, async (e) => {
    assert.equal(e.modality, 'image');
    assert.equal(e.dim, 1280);
    assert.deepEqual(e.inputSize, { width: 224, height: 224 });
    assert.match(e.id, /^mobilenet_v2@[0-9a-f]{12}$/);
    assert.equal(e.provider, 'cpu');
    assert.match(e.providerNote, /cpu requested/);
  });
});

test('batch of 1 and batch of 5 give the same embeddings', async () => {
  const one = await withEncoder({ batchSize: 1 }, (e) => e.embedPixels(pixels, PHOTOS.length));
  const five = await withEncoder({ batchSize: 5 }, (e) => e.embedPixels(pixels, PHOTOS.length));
  // A batch size that does not divide n: the last, partial batch must line up too.
  const three = await withEncoder({ batchSize: 3 }, (e) => e.embedPixels(pixels, PHOTOS.length));
  assert.equal(one.length, PHOTOS.length);
  for (let i = 0; i < PHOTOS.length; i++) {
    for (const other of [five, three]) {
      const maxDiff = one[i].reduce((m, v, k) => Math.max(m, Math.abs(v - other[i][k])), 0);
      assert.ok(maxDiff <= 1e-5, `${PHOTOS[i]}: batched embedding differs by ${maxDiff}`);
    }
  }
});

test('embeddings are unit-norm; raw features are not normalised but point the same way', async () => {
  await withEncoder({}, async (e) => {
    const emb = await e.embedPixels(pixels, PHOTOS.length);
    const raw = await e.rawFeatures(pixels, PHOTOS.length);
    for (let i = 0; i < PHOTOS.length; i++) {
      assert.equal(emb[i].length, 1280);
      const norm = Math.hypot(...emb[i]);
      assert.ok(Math.abs(norm - 1) < 1e-5, `${PHOTOS[i]}: norm ${norm}`);
      assert.ok(Math.abs(Math.hypot(...raw[i]) - 1) > 1e-3, `${PHOTOS[i]}: raw features look normalised`);
      assert.ok(raw[i].every((v) => v >= 0 && v <= 6), 'features are means of ReLU6 outputs, so in [0, 6]');
      assert.ok(cosine(emb[i], raw[i]) > 0.99999);
    }
  });
});

test('different photos give different embeddings', async (t) => {
  await withEncoder({}, async (e) => {
    const emb = await e.embedPixels(pixels, PHOTOS.length);
    let max = -1;
    for (let i = 0; i < PHOTOS.length; i++) {
      for (let j = i + 1; j < PHOTOS.length; j++) {
        const c = cosine(emb[i], emb[j]);
        max = Math.max(max, c);
        assert.ok(c < 0.95, `${PHOTOS[i]} and ${PHOTOS[j]} are nearly identical (cosine ${c.toFixed(4)})`);
      }
    }
    t.diagnostic(`max cosine between different photos: ${max.toFixed(4)}`);
    // ...while the same photo, slightly perturbed, stays close.
    const noisy = pixels.slice(0, SIZE * SIZE * 3).map((v, k) => Math.min(1, Math.max(0, v + (((k * 2654435761) % 7) - 3) / 255)));
    const [n] = await e.embedPixels(noisy, 1);
    assert.ok(cosine(n, emb[0]) > 0.95, `noise of ±3/255 moved the embedding to cosine ${cosine(n, emb[0])}`);
  });
});

test('id is stable across opens and follows the preprocessing spec', async () => {
  const a = await withEncoder({}, async (e) => e.id);
  const b = await withEncoder({ batchSize: 7, device: 'auto' }, async (e) => e.id);
  assert.equal(a, b, 'batch size and device must not change the id');

  // Same network, different declared preprocessing → a different id.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'parallax-encoder-'));
  tempDirs.push(dir);
  const manifest = JSON.parse(readFileSync(path.join(modelDir, 'mobilenet_v2_backbone.json'), 'utf8')) as { onnx: string; input: { preprocessing: PreprocessingSpec } };
  copyFileSync(path.join(modelDir, manifest.onnx), path.join(dir, manifest.onnx));
  manifest.input.preprocessing.resize = 'cover-bilinear';
  writeFileSync(path.join(dir, 'mobilenet_v2_backbone.json'), JSON.stringify(manifest));
  const c = await withEncoder({ modelDir: dir }, async (e) => e.id);
  assert.notEqual(c, a);

  // The id digest covers the model bytes and ignores key order in the spec.
  const spec = manifest.input.preprocessing;
  const bytes = new Uint8Array([1, 2, 3]);
  const reordered = Object.fromEntries(Object.entries(spec).reverse()) as PreprocessingSpec;
  assert.equal(encoderId('m', bytes, spec), encoderId('m', bytes, reordered));
  assert.notEqual(encoderId('m', bytes, spec), encoderId('m', new Uint8Array([1, 2, 4]), spec));
});

test("device 'auto' falls back to cpu here and says why", async () => {
  await withEncoder({ device: 'auto' }, async (e) => {
    assert.ok(['cpu', 'webgpu', 'cuda'].includes(e.provider), `unexpected provider ${e.provider}`);
    assert.ok(e.providerNote.length > 0);
    if (e.provider === 'cpu') {
      // Every GPU provider that was passed over is named with a reason.
      assert.match(e.providerNote, /^auto: .*webgpu.*, using cpu/);
      assert.match(e.providerNote, /cuda/);
    }
    const [emb] = await e.embedPixels(pixels.subarray(0, SIZE * SIZE * 3), 1);
    assert.equal(emb.length, 1280);
  });
});

test("device 'webgpu' either works or throws an error naming webgpu", async () => {
  let encoder: ImageEncoder | undefined;
  try {
    encoder = await openImageEncoder({ model: 'mobilenet_v2', device: 'webgpu', batchSize: 4, modelDir });
  } catch (err) {
    assert.match((err as Error).message, /webgpu/);
    return;
  }
  try {
    assert.equal(encoder.provider, 'webgpu');
    const [emb] = await encoder.embedPixels(pixels.subarray(0, SIZE * SIZE * 3), 1);
    assert.equal(emb.length, 1280);
  } finally {
    await encoder.close();
  }
});

test('provider errors are shortened to their meaning', () => {
  const webgpu =
    '/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 onnxruntime::webgpu::WebGpuContext::Initialize(const onnxruntime::webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No supported adapters';
  assert.equal(shortReason(new Error(webgpu)), 'no adapter found: No supported adapters');
  const lib = 'Failed to load library /x/libonnxruntime_providers_shared.so with error: /x/libonnxruntime_providers_shared.so: cannot open shared object file: No such file or directory';
  assert.equal(shortReason(new Error(lib)), 'libonnxruntime_providers_shared.so could not be loaded');
  assert.equal(shortReason(new Error('/src/a.cc:12 f() x was false. Something broke\nstack')), 'Something broke');
});

test('rejects malformed input with errors that say what is wrong', async () => {
  await withEncoder({}, async (e) => {
    assert.deepEqual(await e.embedPixels(new Float32Array(0), 0), []);
    await assert.rejects(e.embedPixels(new Float32Array(100), 1), /expected 1 image\(s\) of 224x224x3/);
    const bytes = new Float32Array(SIZE * SIZE * 3).fill(128); // 0-255 instead of 0-1
    await assert.rejects(e.embedPixels(bytes, 1), /outside \[0, 1\]/);
    const nan = new Float32Array(SIZE * SIZE * 3);
    nan[5] = Number.NaN;
    await assert.rejects(e.embedPixels(nan, 1), /NaN/);
  });
  const closed = await openImageEncoder({ model: 'mobilenet_v2', device: 'cpu', batchSize: 1, modelDir });
  await closed.close();
  await assert.rejects(closed.embedPixels(new Float32Array(SIZE * SIZE * 3), 1), /closed/);
});

test('unknown models and missing builds fail clearly', async () => {
  await assert.rejects(openImageEncoder({ model: '/models/clip-vit-b32', device: 'cpu', batchSize: 8 }), /encoder \/models\/clip-vit-b32 not implemented yet/);
  const empty = mkdtempSync(path.join(os.tmpdir(), 'parallax-encoder-'));
  tempDirs.push(empty);
  await assert.rejects(openImageEncoder({ model: 'mobilenet_v2', device: 'cpu', batchSize: 8, modelDir: empty }), /npm run build:models/);
});
