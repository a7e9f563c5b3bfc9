// `parallax bench`: on the same images in the same run, the raw encoder's throughput (the
// ONNX session alone, on pre-decoded tensors) against the whole scan's (read, decode,
// encode, every signal, store), single-item latency, and peak memory.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { defaultConfig, type ParallaxConfig } from '../../../shared/config.js';
import { quantile } from '../../../shared/math/stats.js';
import { Engine, machineInfo } from '../engine.js';
import { decodeImage, resizeForEncoder } from '../ingest/image.js';
import { walkMedia } from '../ingest/walk.js';
import { demoDir } from '../paths.js';

export interface BenchResult {
  images: { source: string; count: number };
  encoder: { id: string; provider: string; provider_note: string; batch_size: number };
  encoder_items_per_s: number;
  scan_items_per_s: number;
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
    await trainEngine.close();

    // 3. Whole scan with the embedding cache off, so every item is read, decoded and encoded.
    const noCache = structuredClone(base);
    noCache.embedding_anomaly_detection.performance.cache_embeddings = false;
    const scanEngine = await Engine.open({ dataDir, config: noCache });
    await scanEngine.scan(files.slice(0, Math.min(files.length, batch)), { source: 'bench' }); // warm-up
    log('bench: timing the whole scan');
    const s0 = performance.now();
    const report = await scanEngine.scan(files, { source: 'bench' });
    const scanPerS = report.items.length / ((performance.now() - s0) / 1000);

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
      scan_items_per_s: round(scanPerS),
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
