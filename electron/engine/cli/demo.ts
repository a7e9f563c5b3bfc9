// `parallax demo` (and the workbench's first start): on an empty data folder,
// build the demo baseline from the bundled licence-clean photos, train, then scan a few
// demo suspects: held-out clean photos, generated oddities and red-team attacks.
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { runRedteam } from '../redteam/run.js';
import type { AttackName } from '../redteam/attacks.js';
import { mulberry32 } from '../../../shared/math/rng.js';
import { DEFAULT_BASELINE, type Engine, type ScanReport } from '../engine.js';
import { demoDir } from '../paths.js';
import type { ProgressBar } from './progress.js';

export async function runDemo(engine: Engine, opts: { json: boolean; progress: ProgressBar }): Promise<number> {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const demo = demoDir();
  const baseline = engine.store.findBaseline(DEFAULT_BASELINE);
  if (!baseline || engine.store.baselineSize(baseline.id) === 0) {
    log(`demo: building baseline '${DEFAULT_BASELINE}' from ${path.join(demo, 'baseline')}`);
    const added = await engine.addToBaseline([path.join(demo, 'baseline')], {
      onProgress: (p) => opts.progress.update('baseline add', p.done, p.total),
    });
    opts.progress.done();
    if (added.errors.length > 0) log(`demo: ${added.errors.length} baseline files could not be read`);
  }
  const b = engine.store.findBaseline(DEFAULT_BASELINE)!;
  if (!engine.store.activeDetectorSet(b.id)) {
    log('demo: training detectors');
    const t = await engine.train({ onProgress: (p) => opts.progress.update('train', p.done, p.total) });
    opts.progress.done();
    log(`demo: detector set v${t.detector_set.version} trained on ${t.detector_set.n_items} items in ${t.seconds.toFixed(1)} s`);
    const note = smallBaselineNote(t.detector_set.n_items);
    if (note) log(`demo: ${note}`);
  }
  const suspects = path.join(engine.dataDir, 'demo-suspects');
  await writeDemoSuspects(suspects, path.join(demo, 'holdout'));
  log('demo: attacking a held-out photo with the red team (square 8/255, patch, typographic)');
  await writeRedteamSuspects(engine, suspects, path.join(demo, 'holdout'));
  log(`demo: scanning ${suspects}`);
  const report = await engine.scan([suspects], {
    source: 'demo',
    onProgress: (p) => opts.progress.update('scan', p.done, p.total),
  });
  opts.progress.done();
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    for (const item of report.items) {
      process.stdout.write(`${item.decision.padEnd(6)} risk ${item.risk.toFixed(2)}  ${path.basename(item.path ?? '')}\n`);
    }
    for (const e of report.errors) process.stdout.write(`error  ${path.basename(e.path)}: ${e.reason}\n`);
    process.stdout.write(
      `\nData folder: ${engine.dataDir}\nNext: 'parallax scan <your images>' (add --json for the full breakdown), 'parallax status'.\n`,
    );
  }
  return 0;
}

/**
 * The same demo set for the workbench (`parallax serve` on an empty data folder): baseline,
 * training (through `train`, so the caller can keep it off its event loop) and the demo
 * suspects, with progress and cancellation, and no terminal output.
 */
export async function loadDemoSet(
  engine: Engine,
  opts: {
    train: () => Promise<unknown>;
    onProgress?: (fraction: number, detail: string) => void;
    signal?: AbortSignal;
  },
): Promise<ScanReport> {
  const demo = demoDir();
  const report = (from: number, to: number, detail: string) => (p: { done: number; total: number }) =>
    opts.onProgress?.(from + (to - from) * (p.total ? p.done / p.total : 0), detail);
  const baseline = engine.store.findBaseline(DEFAULT_BASELINE);
  if (!baseline || engine.store.baselineSize(baseline.id) === 0) {
    await engine.addToBaseline([path.join(demo, 'baseline')], {
      signal: opts.signal,
      onProgress: report(0, 0.45, 'demo: embedding the baseline photos'),
    });
  }
  const b = engine.store.findBaseline(DEFAULT_BASELINE)!;
  if (!engine.store.activeDetectorSet(b.id)) {
    opts.onProgress?.(0.5, 'demo: training detectors');
    await opts.train();
  }
  const suspects = path.join(engine.dataDir, 'demo-suspects');
  await writeDemoSuspects(suspects, path.join(demo, 'holdout'));
  opts.onProgress?.(0.7, 'demo: attacking a held-out photo with the red team');
  await writeRedteamSuspects(engine, suspects, path.join(demo, 'holdout'), opts.signal);
  return engine.scan([suspects], { source: 'demo', signal: opts.signal, onProgress: report(0.85, 1, 'demo: scanning the demo suspects') });
}

/** Held-out clean photos plus generated items a baseline of photos should find unusual. */
async function writeDemoSuspects(dir: string, holdout: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(holdout)) {
    const dest = path.join(dir, `clean__${f}`);
    if (!fs.existsSync(dest)) fs.copyFileSync(path.join(holdout, f), dest);
  }
  const size = 224;
  const rng = mulberry32(7);
  const generated: Record<string, () => Promise<Buffer>> = {
    // Uniform noise: nothing a photo baseline has seen.
    'generated__noise.png': async () => {
      const px = Buffer.alloc(size * size * 3);
      for (let i = 0; i < px.length; i++) px[i] = Math.floor(rng() * 256);
      return sharp(px, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer();
    },
    // A flat grey frame, like a blank screenshot.
    'generated__flat-grey.png': async () =>
      sharp({ create: { width: size, height: size, channels: 3, background: '#808080' } }).png().toBuffer(),
    // A high-contrast checkerboard: synthetic, periodic, far from natural image statistics.
    'generated__checkerboard.png': async () => {
      const px = Buffer.alloc(size * size * 3);
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) px.fill(((x >> 3) + (y >> 3)) % 2 ? 255 : 0, (y * size + x) * 3, (y * size + x) * 3 + 3);
      return sharp(px, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer();
    },
    // A held-out photo under a strong random-sign perturbation of 32/255 per pixel.
    'generated__perturbed-photo.png': async () => {
      const first = fs.readdirSync(holdout).sort()[0];
      const { data, info } = await sharp(path.join(holdout, first))
        .removeAlpha()
        .resize(size, size, { fit: 'fill' })
        .raw()
        .toBuffer({ resolveWithObject: true });
      for (let i = 0; i < data.length; i++) data[i] = Math.max(0, Math.min(255, data[i] + (rng() < 0.5 ? -32 : 32)));
      return sharp(data, { raw: { width: info.width, height: info.height, channels: 3 } }).png().toBuffer();
    },
  };
  for (const [name, make] of Object.entries(generated)) {
    const dest = path.join(dir, name);
    if (!fs.existsSync(dest)) fs.writeFileSync(dest, await make());
  }
}

/**
 * Red-team suspects, so a new user sees what the detectors are for: one held-out photo under a
 * score-based L-inf attack (square, 8/255), an adversarial patch, and typographic injection,
 * all crafted against the active encoder. A few seconds on a laptop CPU; written once.
 */
async function writeRedteamSuspects(engine: Engine, dir: string, holdout: string, signal?: AbortSignal): Promise<void> {
  const source = path.join(holdout, fs.readdirSync(holdout).sort()[1]);
  const attacks: { attack: AttackName; eps: number; steps?: number }[] = [
    { attack: 'square', eps: 8 / 255, steps: 300 },
    { attack: 'patch', eps: 0, steps: 300 },
    { attack: 'typographic', eps: 0 },
  ];
  const encoder = await engine.encoder();
  for (const a of attacks) {
    const dest = path.join(dir, `redteam__${a.attack}.png`);
    if (fs.existsSync(dest)) continue;
    const out = fs.mkdtempSync(path.join(dir, '.redteam-'));
    try {
      const manifest = await runRedteam({ files: [source], attack: a.attack, eps: a.eps, steps: a.steps, out, encoder, seed: 1, signal });
      const written = manifest.items[0];
      if (written) fs.renameSync(path.join(out, written.output), dest);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  }
}

/**
 * Every signal is calibrated on the baseline, so a verdict can be no more certain than the
 * baseline is large: below a few hundred items the rarest legitimate-looking tail rests on a
 * fitted extrapolation, and clear oddities may only reach review. Said, not hidden.
 */
export function smallBaselineNote(nItems: number): string | null {
  if (nItems >= 200) return null;
  return `a baseline of ${nItems} items calibrates coarsely (p-values much below 1/${nItems + 1} are extrapolated): expect weak verdicts, and add a few hundred legitimate items for confident blocks`;
}
