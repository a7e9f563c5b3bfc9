// The red team against the real encoder on real photos, with budgets cut to a few hundred
// forward passes per image so the file stays fast on two cores. What must hold at any budget:
// attacks move embeddings further than a benign re-compression, targeted attacks move towards
// the target, budgets hold exactly on the uint8 grid, the PNGs read back through ingest as
// exactly the attacked pixels, and the manifest describes the files on disk.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';

import { defaultConfig } from '../shared/config.js';
import { mulberry32 } from '../shared/math/rng.js';
import { redteamCommand } from '../electron/engine/cli/redteam-command.js';
import { openBackboneEncoder, openImageEncoder, type ImageEncoder } from '../electron/engine/encoders/index.js';
import { adaptiveForward, concatUnitBlocks } from '../electron/engine/redteam/adaptive.js';
import { squeeze, SQUEEZE_DEFAULTS } from '../electron/engine/signals/squeeze.js';
import { decodeImage, readAndDecodeImage, resizeForEncoder } from '../electron/engine/ingest/image.js';
import {
  ATTACK_NAMES,
  applyUniversal,
  attackFamily,
  cosineDistance,
  linf255,
  loadUniversalDelta,
  parseEps,
  runRedteam,
  spsaPgd,
  toBytes,
  typographicAttack,
  type RedteamManifest,
} from '../electron/engine/redteam/index.js';
import { repoRoot } from './helpers/repo-root.js';

const SIZE = { width: 224, height: 224 };
const HOLDOUT = path.join(repoRoot(), 'models', 'demo', 'holdout');

let encoder: ImageEncoder;
let photos: string[];
let work: string;

before(async () => {
  encoder = await openImageEncoder({ model: 'mobilenet_v2', device: 'cpu', batchSize: 32 });
  const all = readdirSync(HOLDOUT).sort().map((f) => path.join(HOLDOUT, f));
  assert.ok(all.length >= 4, `expected at least 4 demo hold-out photos in ${HOLDOUT}`);
  photos = all.slice(0, 3);
  work = mkdtempSync(path.join(os.tmpdir(), 'parallax-redteam-'));
});

after(async () => {
  await encoder?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function clean(file: string): Promise<Float32Array> {
  return resizeForEncoder(await readAndDecodeImage(file), SIZE.width, SIZE.height);
}

/** What the engine's ingest makes of a file: decode, then resize to the encoder's input. */
async function ingest(file: string): Promise<Float32Array> {
  return resizeForEncoder(await decodeImage(new Uint8Array(readFileSync(file))), SIZE.width, SIZE.height);
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Checks every manifest item against its file: hash, L-inf, and the embedding shift as re-measured from the PNG. */
async function checkManifest(m: RedteamManifest, out: string, maxLinf: number | null): Promise<void> {
  const onDisk = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8')) as RedteamManifest;
  assert.deepEqual(onDisk, m, 'manifest.json is the manifest returned');
  assert.equal(m.format, 'parallax.redteam/1');
  assert.equal(m.encoder_id, encoder.id);
  for (const item of m.items) {
    const file = path.join(out, item.output);
    const bytes = readFileSync(file);
    assert.equal(item.sha256, createHash('sha256').update(bytes).digest('hex'), `${item.output}: sha256`);
    const meta = await sharp(bytes).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 224, 224], `${item.output}: a 224×224 PNG`);
    const attacked = await ingest(file);
    const source = await clean(item.source);
    assert.equal(item.linf, linf255(source, attacked), `${item.output}: linf as recorded`);
    if (maxLinf !== null) assert.ok(item.linf <= maxLinf, `${item.output}: linf ${item.linf} > ${maxLinf}`);
    const [e0, e1] = await encoder.embedPixels(concat(source, attacked), 2);
    assert.ok(Math.abs(cosineDistance(e0, e1) - item.embedding_shift) < 1e-4, `${item.output}: shift ${item.embedding_shift} vs re-measured ${cosineDistance(e0, e1)}`);
  }
}

function concat(...parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

test('parseEps: fractions, decimals, grey levels; junk refused', () => {
  assert.equal(parseEps('8/255'), 8 / 255);
  assert.equal(parseEps(' 4 / 255 '), 4 / 255);
  assert.equal(parseEps('0.0314'), 0.0314);
  assert.equal(parseEps('8'), 8 / 255);
  assert.equal(parseEps('16'), 16 / 255);
  assert.equal(parseEps('1'), 1);
  assert.equal(parseEps('.5'), 0.5);
  for (const bad of ['', 'abc', '8/0', '-8', '0', '0/255', '300', '8/255/2', '1e999', 'NaN', '8 255']) {
    assert.throws(() => parseEps(bad), /invalid eps/, `'${bad}' should be refused`);
  }
  assert.throws(() => parseEps('abc'), /write it as 8\/255/);
});

test('catalogue: every attack has a family; the benign controls group together', () => {
  assert.equal(ATTACK_NAMES.length, 11);
  assert.equal(attackFamily('spsa-pgd-targeted'), 'spsa-pgd');
  assert.equal(attackFamily('benign-rotate'), 'benign');
  assert.equal(attackFamily('square'), 'square');
});

test('spsa-pgd and square at 8/255 move embeddings much further than benign JPEG; budgets, files and manifest hold; a bad file is skipped', async () => {
  const bad = path.join(work, 'not-an-image.jpg');
  writeFileSync(bad, 'this is text, not a JPEG');
  const files = [photos[0], bad, photos[1], photos[2]];
  const run = async (attack: 'spsa-pgd' | 'square' | 'benign-jpeg', steps?: number) => {
    const out = path.join(work, attack);
    const m = await runRedteam({ files, attack, eps: 8 / 255, out, encoder, seed: 3, steps, samples: 8 });
    assert.equal(m.items.length, 3, `${attack}: the three photos`);
    assert.deepEqual(m.errors.map((e) => e.source), [bad], `${attack}: the bad file is reported`);
    assert.match(m.errors[0].reason, /not an image|unrecognised/);
    return { m, out };
  };
  const spsa = await run('spsa-pgd', 8);
  const square = await run('square', 150);
  const jpeg = await run('benign-jpeg');

  assert.ok(spsa.m.items.every((i) => i.queries === 1 + 8 * (2 * 8 + 1)), 'spsa queries as budgeted');
  assert.ok(square.m.items.every((i) => i.queries === 152), 'square queries as budgeted');
  assert.deepEqual(spsa.m.items.map((i) => i.output), ['0001-lomiri-wallpapers-20.04__Infinite-Sea_by_Aury88.png', '0003-mate-backgrounds__YellowFlower.png', '0004-opencv__apple.png']);
  await checkManifest(spsa.m, spsa.out, 8);
  await checkManifest(square.m, square.out, 8);
  await checkManifest(jpeg.m, jpeg.out, null);

  const shift = (m: RedteamManifest) => median(m.items.map((i) => i.embedding_shift));
  const benign = shift(jpeg.m);
  assert.ok(shift(spsa.m) > 2 * benign, `spsa-pgd median shift ${shift(spsa.m)} vs JPEG ${benign}`);
  assert.ok(shift(square.m) > 2 * benign, `square median shift ${shift(square.m)} vs JPEG ${benign}`);
});

test('spsa-pgd-targeted moves every image towards the target', async () => {
  const target = readdirSync(HOLDOUT).sort().map((f) => path.join(HOLDOUT, f))[3];
  const out = path.join(work, 'targeted');
  const m = await runRedteam({ files: photos.slice(0, 2), attack: 'spsa-pgd-targeted', eps: 8 / 255, out, encoder, target, steps: 6, samples: 8 });
  assert.equal(m.target?.file, target);
  for (const item of m.items) {
    assert.ok(item.target_similarity_after! > item.target_similarity_before!, `${item.output}: ${item.target_similarity_before} → ${item.target_similarity_after}`);
  }
  await checkManifest(m, out, 8);
  await assert.rejects(runRedteam({ files: photos, attack: 'spsa-pgd-targeted', eps: 8 / 255, out, encoder }), /needs a target/);
});

test('adaptive: the combined view is unit blocks end to end, so its cosine is the weighted mean of the blocks\' cosines', () => {
  // Blocks of weight 1 and 1/√2, over √1.5 in all: a unit vector, and cos = (1·cos₁ + ½·cos₂) / 1.5.
  const a = concatUnitBlocks([[Float32Array.of(3, 4), 1], [Float32Array.of(0, 2), Math.SQRT1_2]]);
  const b = concatUnitBlocks([[Float32Array.of(4, 3), 1], [Float32Array.of(1, 0), Math.SQRT1_2]]);
  const r = Math.sqrt(1.5);
  assert.deepEqual(Array.from(a).map((v) => Math.round(v * 1e6) / 1e6), [0.6 / r, 0.8 / r, 0, Math.SQRT1_2 / r].map((v) => Math.round(v * 1e6) / 1e6));
  assert.ok(Math.abs(Math.hypot(...a) - 1) < 1e-6, 'unit length');
  const cos = 1 - cosineDistance(a, b);
  assert.ok(Math.abs(cos - (1 * 0.96 + 0.5 * 0) / 1.5) < 1e-6, `cos ${cos}`);
});

test('adaptive spsa-pgd-targeted: queries the primary, squeezed and cross-encoder views together; the manifest still measures the primary', async () => {
  const secondary = await openBackboneEncoder('inception_v3_backbone', { device: 'cpu', batchSize: 16 });
  try {
    const adaptive = { squeeze: { ...SQUEEZE_DEFAULTS }, secondary };
    const forward = adaptiveForward(encoder, SIZE, adaptive);
    // The combined view of one photo, block by block, against each encoder run directly.
    const x = await clean(photos[0]);
    const [view] = await forward(x, 1);
    const copies = [];
    for (const name of ['median', 'jpeg', 'resize'] as const) copies.push((await squeeze(name, x, 224, 224, SQUEEZE_DEFAULTS))[0]);
    const prim = await encoder.embedPixels(concat(x, ...copies), 4);
    const x299 = await resizeForEncoder({ rgb: toBytes(x), width: 224, height: 224 }, 299, 299);
    const [inc] = await secondary.embedPixels(x299, 1);
    const expected = concatUnitBlocks([[prim[0], 1], [prim[1], 1 / Math.sqrt(3)], [prim[2], 1 / Math.sqrt(3)], [prim[3], 1 / Math.sqrt(3)], [inc, 1]]);
    assert.equal(view.length, 1280 * 4 + 2048);
    assert.ok(cosineDistance(view, expected) < 1e-5, `combined view vs blocks: ${cosineDistance(view, expected)}`);

    const target = readdirSync(HOLDOUT).sort().map((f) => path.join(HOLDOUT, f))[3];
    const out = path.join(work, 'adaptive');
    const m = await runRedteam({ files: photos.slice(0, 2), attack: 'spsa-pgd-targeted', eps: 8 / 255, out, encoder, target, steps: 3, samples: 4, adaptive });
    assert.equal(m.family, 'spsa-pgd-adaptive');
    assert.equal(m.params.adaptive, `primary+squeeze:median+squeeze:jpeg+squeeze:resize+cross:${secondary.id}`);
    await checkManifest(m, out, 8);
    // What the attack maximised, the combined view's similarity to the target's, never falls
    // (the best iterate is kept, clean included) and rises for some image.
    const [t] = await forward(await clean(target), 1);
    const gains = [];
    for (const item of m.items) {
      const [before] = await forward(await clean(item.source), 1);
      const [afterView] = await forward(await ingest(path.join(out, item.output)), 1);
      gains.push(cosineDistance(before, t) - cosineDistance(afterView, t));
    }
    assert.ok(gains.every((g) => g >= -1e-6) && gains.some((g) => g > 0), `combined-view gains ${gains}`);
    await assert.rejects(runRedteam({ files: photos, attack: 'typographic', eps: 0, out: path.join(work, 'adaptive-typo'), encoder, adaptive }), /does not query the encoder/);
  } finally {
    await secondary.close();
  }
});

test('the budget is whole grey levels and survives the PNG round trip bit for bit', async () => {
  const x = await clean(photos[0]);
  // 0.0314 is 8.007 grey levels: the budget is 8, never a rounded-up 9.
  const r = await spsaPgd(x, { forward: (p, n) => encoder.embedPixels(p, n), size: SIZE, eps: 0.0314, objective: { mode: 'away' }, rng: mulberry32(5), steps: 3, samples: 4 });
  assert.ok(linf255(x, r.pixels) <= 8 && linf255(x, r.pixels) >= 1, `linf ${linf255(x, r.pixels)}`);
  assert.ok(r.pixels.every((v) => Math.fround(Math.round(v * 255) / 255) === v), 'on the uint8 grid');
  const png = await sharp(toBytes(r.pixels), { raw: { width: 224, height: 224, channels: 3 } }).png().toBuffer();
  const reread = await resizeForEncoder(await decodeImage(new Uint8Array(png)), 224, 224);
  assert.deepEqual(reread, r.pixels, 'decode → resizeForEncoder of the PNG is the identity');
  assert.throws(() => linf255(x, new Float32Array(3)), /lengths differ/);
  await assert.rejects(runRedteam({ files: photos, attack: 'square', eps: 1 / 512, out: path.join(work, 'tiny'), encoder }), /below one grey level/);
});

test('universal: one δ for every image, saved, and re-applicable to held-out images', async () => {
  const out = path.join(work, 'universal');
  const m = await runRedteam({ files: photos, attack: 'universal', eps: 6 / 255, out, encoder, steps: 4, samples: 2 });
  assert.ok(m.universal && m.universal.fit_queries > 0 && m.universal.fit_images === 3);
  await checkManifest(m, out, 6);
  const { delta, file } = await loadUniversalDelta(path.join(out, 'universal-delta.json'));
  assert.equal(file.levels, 6);
  assert.ok(delta.some((v) => v !== 0), 'δ is not zero');
  for (const item of m.items) {
    const x = await clean(item.source);
    const attacked = await ingest(path.join(out, item.output));
    assert.deepEqual(attacked, applyUniversal(delta, x), `${item.output} is the clean image + δ`);
    // Wherever clipping did not intervene, the change is δ itself.
    for (let i = 0; i < x.length; i++) {
      const want = Math.round(x[i] * 255) + Math.round(delta[i] * 255);
      if (want >= 0 && want <= 255) assert.equal(Math.round(attacked[i] * 255), want);
    }
  }
  const picture = await sharp(path.join(out, 'universal-delta.png')).raw().toBuffer();
  assert.ok(picture.every((v, i) => v === 128 + Math.round(delta[i] * 255)), 'the PNG shows δ + 128');
  // Held-out: δ applies to an image it was not fitted on, within budget.
  const heldOut = await clean(readdirSync(HOLDOUT).sort().map((f) => path.join(HOLDOUT, f))[3]);
  assert.ok(linf255(heldOut, applyUniversal(delta, heldOut)) <= 6);
  assert.throws(() => applyUniversal(delta, new Float32Array(10)), /whole number of images/);
});

test('patch: only the pixels inside its square change', async () => {
  const out = path.join(work, 'patch');
  const m = await runRedteam({ files: photos.slice(0, 2), attack: 'patch', eps: 0, out, encoder, steps: 30 });
  for (const item of m.items) {
    const r = item.region!;
    assert.equal(r.width, 55);
    assert.ok(r.x >= 0 && r.y >= 0 && r.x + r.width <= 224 && r.y + r.height <= 224, 'inside the image');
    const x = await clean(item.source);
    const attacked = await ingest(path.join(out, item.output));
    let inside = 0;
    for (let i = 0; i < x.length; i++) {
      if (x[i] === attacked[i]) continue;
      const px = Math.floor(i / 3) % 224;
      const py = Math.floor(i / 3 / 224);
      assert.ok(px >= r.x && px < r.x + r.width && py >= r.y && py < r.y + r.height, `${item.output}: (${px},${py}) changed outside the patch`);
      inside++;
    }
    assert.ok(inside > 0.5 * 55 * 55, `${item.output}: the patch changed only ${inside} values`);
    assert.ok(item.embedding_shift > 0);
  }
  await checkManifest(m, out, null);
});

test('patch, grey palette: black and white only inside the square (no colour difference), family patch-grey', async () => {
  const out = path.join(work, 'patch-grey');
  const m = await runRedteam({ files: photos.slice(0, 1), attack: 'patch', eps: 0, out, encoder, steps: 30, patchPalette: 'grey' });
  assert.equal(m.family, 'patch-grey');
  assert.equal(m.params.palette, 'grey');
  const [item] = m.items;
  const r = item.region!;
  const attacked = await ingest(path.join(out, item.output));
  for (let y = r.y; y < r.y + r.height; y++) {
    for (let x = r.x; x < r.x + r.width; x++) {
      const o = (y * 224 + x) * 3;
      assert.ok((attacked[o] === 0 || attacked[o] === 1) && attacked[o + 1] === attacked[o] && attacked[o + 2] === attacked[o], `(${x},${y}) is not black or white`);
    }
  }
  assert.ok(item.embedding_shift > 0);
  await checkManifest(m, out, null);
  await assert.rejects(runRedteam({ files: photos.slice(0, 1), attack: 'square', eps: 8 / 255, out, encoder, patchPalette: 'grey' }), /for the patch attack only/);
});

test('typographic: text is rendered, and only inside the region reported', async () => {
  const x = await clean(photos[2]);
  for (const seed of [1, 2, 3, 4]) {
    const r = await typographicAttack(x, { size: SIZE, rng: mulberry32(seed) });
    const { region } = r;
    assert.ok(region.x >= 0 && region.y >= 0 && region.x + region.width <= 224 && region.y + region.height <= 224, 'inside the image');
    assert.ok(region.width > 40 && region.height > 8, `region ${JSON.stringify(region)} is big enough to hold text`);
    let x0 = 224, y0 = 224, x1 = -1, y1 = -1, changed = 0;
    for (let p = 0; p < 224 * 224; p++) {
      if (x[p * 3] === r.pixels[p * 3] && x[p * 3 + 1] === r.pixels[p * 3 + 1] && x[p * 3 + 2] === r.pixels[p * 3 + 2]) continue;
      const px = p % 224;
      const py = Math.floor(p / 224);
      [x0, y0, x1, y1] = [Math.min(x0, px), Math.min(y0, py), Math.max(x1, px), Math.max(y1, py)];
      changed++;
    }
    assert.ok(changed > 100, `seed ${seed}: only ${changed} pixels changed: no text rendered?`);
    assert.ok(x0 >= region.x && y0 >= region.y && x1 < region.x + region.width && y1 < region.y + region.height, `seed ${seed}: changes outside the region`);
    // The ink fills the region (a box, or the text's own bounding box), not a corner of it.
    assert.ok(x1 - x0 + 1 >= 0.8 * region.width && y1 - y0 + 1 >= 0.8 * region.height, `seed ${seed}: changes span ${x1 - x0 + 1}×${y1 - y0 + 1} of ${region.width}×${region.height}`);
    assert.ok(r.text.length > 20);
  }
});

test('CLI: bad flags exit 2 with the reason; a run writes its manifest and prints it with --json', async () => {
  // Captured through the context, not by patching process.stdout: the test runner reports on it.
  const cli = async (argv: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const sink = (into: string[]) => ({ write: (s: string) => (into.push(String(s)), true) }) as unknown as NodeJS.WriteStream;
    const code = await redteamCommand(argv, { dataDir: work, config: defaultConfig(), stdout: sink(out), stderr: sink(err) });
    return { code, stdout: out.join(''), stderr: err.join('') };
  };
  const unknown = await cli([photos[0], '--attack', 'fgsm', '--eps', '8/255', '--out', work]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown attack 'fgsm' \(one of: spsa-pgd, spsa-pgd-targeted, square/);
  const noTarget = await cli([photos[0], '--attack', 'spsa-pgd-targeted', '--eps', '8/255', '--out', work]);
  assert.equal(noTarget.code, 2);
  assert.match(noTarget.stderr, /needs --target FILE/);
  const notQuery = await cli([photos[0], '--attack', 'typographic', '--adaptive', '--out', work]);
  assert.equal(notQuery.code, 2);
  assert.match(notQuery.stderr, /--adaptive applies to attacks that query the encoder/);
  const paletteElsewhere = await cli([photos[0], '--attack', 'square', '--eps', '8/255', '--palette', 'grey', '--out', work]);
  assert.equal(paletteElsewhere.code, 2);
  assert.match(paletteElsewhere.stderr, /--palette applies to the patch attack, not to 'square'/);
  const badPalette = await cli([photos[0], '--attack', 'patch', '--palette', 'pastel', '--out', work]);
  assert.equal(badPalette.code, 2);
  assert.match(badPalette.stderr, /--palette must be one of colour, grey, got 'pastel'/);
  const badEps = await cli([photos[0], '--attack', 'square', '--eps', 'lots', '--out', work]);
  assert.equal(badEps.code, 2);
  assert.match(badEps.stderr, /--eps: invalid eps 'lots'/);
  const noEps = await cli([photos[0], '--attack', 'square', '--out', work]);
  assert.equal(noEps.code, 2);
  assert.match(noEps.stderr, /--eps is required/);
  const badTarget = await cli([photos[0], '--attack', 'spsa-pgd-targeted', '--eps', '8', '--target', path.join(work, 'nope.png'), '--out', work, '--quiet']);
  assert.equal(badTarget.code, 2);
  assert.match(badTarget.stderr, /target .*nope\.png: file does not exist/);

  const out = path.join(work, 'cli-color');
  const ok = await cli([photos[0], path.join(work, 'missing.jpg'), '--attack', 'benign-color', '--out', out, '--json', '--quiet', '--seed', '7']);
  assert.equal(ok.code, 3, 'one input missing: exit 3, the rest done');
  const m = JSON.parse(ok.stdout) as RedteamManifest;
  assert.equal(m.attack, 'benign-color');
  assert.equal(m.seed, 7);
  assert.equal(m.items.length, 1);
  assert.deepEqual(m.errors, [{ source: path.join(work, 'missing.jpg'), reason: 'does not exist' }]);
  await checkManifest(m, out, null);
});
