// `parallax bench`: on the same images in the same run, the raw encoder's throughput (the
// ONNX session alone, on pre-decoded tensors) against the whole scan's (read, decode,
// encode, every signal, store), single-item latency, and peak memory; and the whole scan
// once per tier (cheap signals only; plus transformation consistency; plus the cross
// encoder), so the cost of each expensive signal can be read off directly.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { defaultConfig, type ParallaxConfig } from '../../../shared/config.js';
import { quantile } from '../../../shared/math/stats.js';
import { EXPENSIVE_SIGNALS, type ExpensiveSignalName, type TierMode } from '../../../shared/detectors/signals.js';
import { Engine, machineInfo, type ScanOptions } from '../engine.js';
import { decodeImage, resizeForEncoder } from '../ingest/image.js';
import { walkMedia } from '../ingest/walk.js';
import { demoDir } from '../paths.js';

export interface BenchResult {
  images: { source: string; count: number };
  encoder: { id: string; provider: string; provider_note: string; batch_size: number };
  encoder_items_per_s: number;
  /** The cross encoder's secondary model alone, on pre-decoded tensors (null when it is off). */
  secondary_encoder_items_per_s: number | null;
  /** The whole scan in the default (configured) tier policy. */
  scan_items_per_s: number;
  /**
   * The whole scan with the expensive signals forced: `cheap` none, `squeeze` transformation
   * consistency on every item, `cross_encoder` the cross encoder (and its regression residual)
   * on every item, `all` both.
   * A tier that needs a signal the configuration turned off is null.
   */
  tiers: Record<'cheap' | 'squeeze' | 'cross_encoder' | 'all', { items_per_s: number; ran: Partial<Record<ExpensiveSignalName, number>> } | null>;
  /** Share of the default scan's items for which each expensive signal ran. */
  default_tier_share: Partial<Record<ExpensiveSignalName, number>>;
  scan_to_encoder_ratio: number;
  latency_ms: { p50: number; p95: number; max: number; items: number };
  train_s: number;
  peak_rss_mb: number;
  machine: ReturnType<typeof machineInfo> & { onnxruntime: string };
}

export async function runBench(opts: {
  images?: string;
  limit?: number;
  config?: ParallaxConfig;
  log?: (line: string) => void;
}): Promise<BenchResult> {
  const log = opts.log ?? (() => undefined);
  const source = path.resolve(opts.images ?? path.join(demoDir(), 'baseline'));
  const files: string[] = [];
  for await (const f of walkMedia([source])) if (!f.error) files.push(f.path);
  const limit = opts.limit ?? 500;
  files.splice(limit);
  if (files.length < 10) throw new Error(`bench needs at least 10 images, found ${files.length} in ${source}`);

  const base = opts.config ?? defaultConfig();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-bench-'));
  try {
    // 1. Baseline and detectors on the same images (the scan below then runs every signal).
    const trainEngine = await Engine.open({ dataDir, config: base });
    log(`bench: embedding ${files.length} images from ${source} as the baseline`);
    await trainEngine.addToBaseline(files);
    const t0 = performance.now();
    await trainEngine.train();
    const trainS = (performance.now() - t0) / 1000;
    const encoder = await trainEngine.encoder();
    const batch = base.embedding_anomaly_detection.embedding_model.batch_size;

    // 2. Raw encoder: tensors decoded beforehand, only the ONNX session is timed.
    const { width, height } = encoder.inputSize;
    const tensors: Float32Array[] = [];
    for (const f of files) {
      const img = await decodeImage(fs.readFileSync(f));
      tensors.push(await resizeForEncoder(img, width, height));
    }
    const stride = width * height * 3;
    const runEncoder = async () => {
      for (let i = 0; i < tensors.length; i += batch) {
        const chunk = tensors.slice(i, i + batch);
        const pixels = new Float32Array(stride * chunk.length);
        chunk.forEach((t, j) => pixels.set(t, j * stride));
        await encoder.embedPixels(pixels, chunk.length);
      }
    };
    await runEncoder(); // warm-up: first runs pay for kernel selection and allocation
    log('bench: timing the raw encoder');
    const e0 = performance.now();
    await runEncoder();
    const encoderPerS = files.length / ((performance.now() - e0) / 1000);
    tensors.length = 0;
    let secondaryPerS: number | null = null;
    if (base.embedding_anomaly_detection.detection_methods.cross_encoder.mode !== 'off') {
      const secondary = await trainEngine.secondaryEncoder();
      const s = secondary.inputSize;
      const stride2 = s.width * s.height * 3;
      const n2 = Math.min(files.length, 64);
      const batch2 = new Float32Array(stride2 * n2);
      for (let i = 0; i < n2; i++) batch2.set(await resizeForEncoder(await decodeImage(fs.readFileSync(files[i])), s.width, s.height), i * stride2);
      await secondary.embedPixels(batch2.subarray(0, stride2 * Math.min(n2, 8)), Math.min(n2, 8)); // warm-up
      log('bench: timing the secondary encoder');
      const s0 = performance.now();
      await secondary.embedPixels(batch2, n2);
      secondaryPerS = n2 / ((performance.now() - s0) / 1000);
    }
    await trainEngine.close();

    // 3. Whole scan with the embedding cache off, so every item is read, decoded and encoded.
    const noCache = structuredClone(base);
    noCache.embedding_anomaly_detection.performance.cache_embeddings = false;
    const scanEngine = await Engine.open({ dataDir, config: noCache });
    await scanEngine.scan(files.slice(0, Math.min(files.length, batch)), { source: 'bench' }); // warm-up
    log('bench: timing the whole scan');
    const timeScan = async (tiers?: ScanOptions['tiers']) => {
      const t0s = performance.now();
      const r = await scanEngine.scan(files, { source: 'bench', tiers });
      const ran: Partial<Record<ExpensiveSignalName, number>> = {};
      for (const name of EXPENSIVE_SIGNALS) {
        ran[name] = round(r.items.filter((i) => i.tier?.ran.includes(name)).length / Math.max(1, r.items.length), 3);
      }
      return { items_per_s: round(r.items.length / ((performance.now() - t0s) / 1000)), ran };
    };
    const whole = await timeScan();
    const scanPerS = whole.items_per_s;
    const m = base.embedding_anomaly_detection.detection_methods;
    const enabled = { squeeze: m.transformation_consistency.mode !== 'off', cross_encoder: m.cross_encoder.mode !== 'off' };
    // The regression residual reuses the cross encoder's pass, so it runs with that tier.
    // squeeze_cross needs both passes; it runs only where squeeze and cross_encoder both do.
    // patch_texture (no pass, but the pixels kept) is timed with the squeeze tier.
    const force = (squeeze: TierMode, cross: TierMode) => ({ squeeze, cross_encoder: cross, cross_regression: cross, squeeze_cross: cross, patch_texture: squeeze });
    const tiers: BenchResult['tiers'] = { cheap: null, squeeze: null, cross_encoder: null, all: null };
    log('bench: timing each tier');
    tiers.cheap = await timeScan(force('off', 'off'));
    if (enabled.squeeze) tiers.squeeze = await timeScan(force('always', 'off'));
    if (enabled.cross_encoder) tiers.cross_encoder = await timeScan(force('off', 'always'));
    if (enabled.squeeze && enabled.cross_encoder) tiers.all = await timeScan(force('always', 'always'));

    // 4. Latency of one item on its own, as the MCP guard sees it.
    log('bench: timing single-item latency');
    const latencies: number[] = [];
    for (const f of files.slice(0, 50)) {
      const bytes = fs.readFileSync(f);
      const l0 = performance.now();
      await scanEngine.scanBytes(bytes, { name: f, source: 'bench' });
      latencies.push(performance.now() - l0);
    }
    await scanEngine.close();

    return {
      images: { source, count: files.length },
      encoder: { id: encoder.id, provider: encoder.provider, provider_note: encoder.providerNote, batch_size: batch },
      encoder_items_per_s: round(encoderPerS),
      secondary_encoder_items_per_s: secondaryPerS === null ? null : round(secondaryPerS),
      scan_items_per_s: round(scanPerS),
      tiers,
      default_tier_share: whole.ran,
      scan_to_encoder_ratio: round(scanPerS / encoderPerS, 3),
      latency_ms: {
        p50: round(quantile(latencies, 0.5)),
        p95: round(quantile(latencies, 0.95)),
        max: round(Math.max(...latencies)),
        items: latencies.length,
      },
      train_s: round(trainS),
      peak_rss_mb: round(process.resourceUsage().maxRSS / 1024),
      machine: { ...machineInfo(), onnxruntime: onnxRuntimeVersion() },
    };
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

function onnxRuntimeVersion(): string {
  try {
    const require = createRequire(import.meta.url);
    return (require('onnxruntime-node/package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
