// The patch-texture statistic (electron/engine/signals/texture.ts) on tensors whose answer can
// be worked out by hand, and on what it exists for: a small square of colour noise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mulberry32 } from '../shared/math/rng.js';
import { patchTexture } from '../electron/engine/signals/texture.js';

const W = 64;

function image(fill: (x: number, y: number) => [number, number, number], w = W, h = W): Float32Array {
  const out = new Float32Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out.set(fill(x, y), (y * w + x) * 3);
  return out;
}

test('patch texture: a single red impulse gives the hand-computed window mean; flat, ramps and grey noise give 0', () => {
  // R = 1 at one pixel of a black image: C1 = 255 there. Immerkær's mask answers 4·255 at the
  // pixel, −2·255 at its 4 neighbours, 255 at its 4 diagonals: Σ|.| = 16·255; e averages the
  // two colour channels (C2 = 0), so Σe = 8·255 over the 3×3 footprint. Windows are 8×8
  // (64/8) at stride 4 from (1, 1); the one at (17, 17) holds the footprint of (20, 20):
  // 8·255 / 64 = 31.875.
  const impulse = image((x, y) => (x === 20 && y === 20 ? [1, 0, 0] : [0, 0, 0]));
  assert.equal(patchTexture(impulse, W, W), (8 * 255) / 64);
  assert.equal(patchTexture(image(() => [0.3, 0.5, 0.7]), W, W), 0);
  // A colour ramp: each channel linear in x and y, which the mask cancels exactly (to rounding).
  const ramp = image((x, y) => [x / 100, (x + y) / 200, y / 100]);
  assert.ok(patchTexture(ramp, W, W) < 1e-3, `ramp ${patchTexture(ramp, W, W)}`);
  // Grey noise (R = G = B) has no colour difference at all.
  const rng = mulberry32(3);
  const grey = image(() => { const v = rng(); return [v, v, v]; });
  assert.equal(patchTexture(grey, W, W), 0);
});

test('patch texture: a small square of colour noise stands far above per-pixel noise spread over the whole image', () => {
  const rng = mulberry32(9);
  const side = 224;
  const smooth = (x: number, y: number): [number, number, number] => [0.4 + 0.2 * Math.sin(x / 30), 0.5 + 0.1 * Math.cos(y / 25), 0.3 + x / 1000];
  const base = patchTexture(image(smooth, side, side), side, side);
  // A 56×56 patch of uniformly random colours (about 6% of the image), as the red team's patch attack writes.
  const patched = image((x, y) => (x >= 100 && x < 156 && y >= 40 && y < 96 ? [rng(), rng(), rng()] : smooth(x, y)), side, side);
  // ±4/255 colour noise everywhere: an eps-4 perturbation's worth, per pixel.
  const spread = image((x, y) => smooth(x, y).map((v) => v + (rng() < 0.5 ? 4 : -4) / 255) as [number, number, number], side, side);
  const p = patchTexture(patched, side, side);
  const s = patchTexture(spread, side, side);
  assert.ok(base < 0.5, `smooth ${base}`);
  assert.ok(p > 100, `patched ${p}`);
  // Per-pixel colour noise everywhere is texture too (about 30 here, above most photos), but
  // only a window filled with free, saturated colours reaches the hundreds.
  assert.ok(s > 10 && s < p / 10, `spread ${s} against patched ${p}`);
});

test('patch texture: refuses a tensor of the wrong length or too small to hold a window', () => {
  assert.throws(() => patchTexture(new Float32Array(10), W, W), /10 values for a 64×64×3 tensor/);
  assert.throws(() => patchTexture(new Float32Array(4 * 4 * 3), 4, 4), /too small/);
});
