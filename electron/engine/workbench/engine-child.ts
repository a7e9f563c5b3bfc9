// A child process for the engine's heavy work. Encoding runs onnxruntime-node's session.run on
// the calling thread (a batch of 32 images holds it for a second or more on a small machine),
// and training is minutes of synchronous arithmetic: in the server's process either would
// freeze every request and WebSocket. So each such job forks this file, which opens its own
// Engine on the same data folder (SQLite in WAL mode serves both), sends one 'run' message,
// gets progress and one result back, and exits. Worker threads are not an option: onnxruntime
// crashes when several threads load it.
//   train         Engine.train: stored, versioned, activated
//   preview       Engine.train on a scratch copy with the pending relabels applied: exactly what
//                 a retrain would produce, nothing written to the real data folder
//   baseline-add  Engine.addToBaseline
//   scan          Engine.scan
//   rescan        Engine.scanBytes on each item's verified media, with the active version
//   demo          the bundled demo set (baseline, training, suspects)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { ParallaxConfig } from '../../../shared/config.js';
import { detectorSetFromJSON, type DetectorSet } from '../../../shared/detectors/detector-set.js';
import type { RetrainResult } from '../../../shared/api/schemas.js';
import { loadDemoSet } from '../cli/demo.js';
import { Engine } from '../engine.js';
import { featuresFor, readStoredState, embeddingsFor } from './detector-state.js';
import { MediaLibrary, type MediaBytes } from './media.js';

interface Common {
  type: 'run';
  dataDir: string;
  config?: ParallaxConfig;
}

export type ChildRequest =
  | (Common & { mode: 'train'; baseline: string })
  | (Common & { mode: 'preview'; baseline: string; activeId: number; joinIds: number[]; leaveIds: number[]; maliciousIds: number[] })
  | (Common & { mode: 'baseline-add'; baseline: string; paths: string[] })
  | (Common & { mode: 'scan'; baseline?: string; source: string; paths: string[] })
  | (Common & { mode: 'rescan'; baseline: string; sha256s: string[] })
  | (Common & { mode: 'demo' })
  | { type: 'cancel' };

export type RunRequest = Extract<ChildRequest, { type: 'run' }>;

export type ChildMessage =
  | { type: 'progress'; fraction: number; detail: string }
  | { type: 'done'; result: unknown }
  | { type: 'error'; message: string };

export interface PreviewOutcome {
  candidate: { fpr: { review: number; block: number }; tpr: { review: number; block: number } | null; n_items: number };
  current: { tpr: { review: number; block: number } | null };
  threshold_shift: { signal: string; before: number | null; after: number | null }[];
  joining_after: { itemId: number; risk_after: number }[];
  seconds: number;
}

export type RescanOutcome = Pick<RetrainResult, 'rescanned' | 'not_rescanned' | 'changed'>;

const controller = new AbortController();
const signal = controller.signal;

if (process.send) {
  // Background work yields the CPU to the server that answers the analyst: lower this process's
  // priority before onnxruntime starts its thread pool (threads inherit it).
  try {
    os.setPriority(10);
  } catch {
    // Not permitted here: run at normal priority.
  }
}

function send(msg: ChildMessage): void {
  process.send?.(msg);
}

const fraction = (p: { done: number; total: number }) => (p.total ? p.done / p.total : 0);

async function withEngine<T>(dataDir: string, config: ParallaxConfig | undefined, fn: (e: Engine) => Promise<T>): Promise<T> {
  const engine = await Engine.open({ dataDir, config });
  try {
    return await fn(engine);
  } finally {
    await engine.close();
  }
}

function rates(engine: Engine, set: DetectorSet, encoderId: string, ids: number[]): { review: number; block: number } | null {
  const items = embeddingsFor(engine.store, ids, encoderId);
  if (items.length === 0) return null;
  const scores = set.score(items.map((i) => i.vector), { features: featuresFor(engine.store, set, encoderId, items.map((i) => i.itemId)) });
  const t = set.params.thresholds;
  return {
    review: scores.filter((s) => s.risk >= t.review).length / scores.length,
    block: scores.filter((s) => s.risk >= t.block).length / scores.length,
  };
}

async function preview(req: Extract<RunRequest, { mode: 'preview' }>): Promise<PreviewOutcome> {
  const started = performance.now();
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-preview-'));
  try {
    send({ type: 'progress', fraction: 0.01, detail: 'copying the database for a dry run' });
    const source = new Database(path.join(req.dataDir, 'parallax.db'), { readonly: true, fileMustExist: true });
    try {
      await source.backup(path.join(scratch, 'parallax.db'));
    } finally {
      source.close();
    }
    const configFile = path.join(req.dataDir, 'config.yaml');
    if (!req.config && fs.existsSync(configFile)) fs.copyFileSync(configFile, path.join(scratch, 'config.yaml'));
    return await withEngine(scratch, req.config, async (engine) => {
      const store = engine.store;
      const b = store.findBaseline(req.baseline);
      if (!b) throw new Error(`baseline '${req.baseline}' does not exist`);
      store.transaction(() => {
        for (const id of req.joinIds) store.addToBaseline(b.id, id);
        for (const id of req.leaveIds) store.db.prepare('DELETE FROM baseline_items WHERE baseline_id = ? AND item_id = ?').run(b.id, id);
      });
      const active = store.detectorSet(req.activeId);
      if (!active) throw new Error(`detector set ${req.activeId} does not exist`);
      const current = detectorSetFromJSON(readStoredState(store, active.id).set);
      const trained = await engine.train({
        baseline: req.baseline,
        signal,
        onProgress: (p) => send({ type: 'progress', fraction: 0.03 + 0.9 * fraction(p), detail: `candidate: ${p.stage}` }),
      });
      const row = store.detectorSet(trained.detector_set.id)!;
      const state = readStoredState(store, row.id);
      const candidate = detectorSetFromJSON(state.set);
      const position = new Map(state.members.map((m, i) => [m.itemId, i]));
      const joiners = embeddingsFor(store, req.joinIds, row.encoder_id).filter((j) => position.has(j.itemId));
      const joinScores = candidate.score(
        joiners.map((j) => j.vector),
        {
          // Members are not their own nearest neighbour: scored as the kNN would a newcomer.
          baselineIndices: joiners.map((j) => position.get(j.itemId)!),
          features: featuresFor(store, candidate, row.encoder_id, joiners.map((j) => j.itemId)),
        },
      );
      const names = [...new Set([...current.allSignals, ...candidate.allSignals])];
      const before = current.stats.signals as Record<string, { p99?: number } | undefined>;
      const after = candidate.stats.signals as Record<string, { p99?: number } | undefined>;
      return {
        candidate: { fpr: candidate.stats.oofFalsePositiveRate, tpr: rates(engine, candidate, row.encoder_id, req.maliciousIds), n_items: row.n_items },
        current: { tpr: rates(engine, current, active.encoder_id, req.maliciousIds) },
        threshold_shift: names.map((s) => ({ signal: s, before: before[s]?.p99 ?? null, after: after[s]?.p99 ?? null })),
        joining_after: joiners.map((j, i) => ({ itemId: j.itemId, risk_after: joinScores[i].risk })),
        seconds: (performance.now() - started) / 1000,
      };
    });
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/** Re-scores items with the active version from their media, read where it is verified to still be. */
export async function rescan(
  engine: Engine,
  sha256s: readonly string[],
  baseline: string,
  progress: (fraction: number, detail: string) => void,
  abort?: AbortSignal,
): Promise<RescanOutcome> {
  const media = new MediaLibrary(engine.store, path.join(engine.dataDir, 'thumbnails'), engine.limits);
  const out: RescanOutcome = { rescanned: 0, not_rescanned: [], changed: [] };
  const unique = [...new Set(sha256s)];
  const clamp = (x: number) => (x < 0 ? 0 : x > 1 ? 1 : x);
  for (let i = 0; i < unique.length; i++) {
    if (abort?.aborted) throw new Error('rescan cancelled');
    const sha = unique[i];
    progress(i / Math.max(1, unique.length), `re-scoring ${i + 1} of ${unique.length}`);
    const before = engine.store.latestVerdict(sha);
    let bytes: MediaBytes;
    try {
      bytes = await media.original(sha);
    } catch (err) {
      out.not_rescanned.push({ sha256: sha, reason: err instanceof Error ? err.message : String(err) });
      continue;
    }
    const res = await engine.scanBytes(bytes.bytes, { name: bytes.path, source: 'rescan', baseline });
    if ('reason' in res) {
      out.not_rescanned.push({ sha256: sha, reason: `${res.path}: ${res.reason}` });
      continue;
    }
    out.rescanned++;
    if (!before || before.decision !== res.decision || Math.abs(before.risk - res.risk) > 1e-9) {
      out.changed.push({ sha256: sha, before: before?.decision ?? null, after: res.decision, risk_before: before ? clamp(before.risk) : null, risk_after: clamp(res.risk) });
    }
  }
  return out;
}

async function run(req: RunRequest): Promise<unknown> {
  const progress = (f: number, detail: string) => send({ type: 'progress', fraction: f, detail });
  switch (req.mode) {
    case 'preview':
      return preview(req);
    case 'train':
      return withEngine(req.dataDir, req.config, (engine) =>
        engine.train({ baseline: req.baseline, signal, onProgress: (p) => progress(fraction(p), p.stage) }),
      );
    case 'baseline-add':
      return withEngine(req.dataDir, req.config, async (engine) => {
        const report = await engine.addToBaseline(req.paths, {
          baseline: req.baseline,
          signal,
          onProgress: (p) => progress(fraction(p), `${p.done} of ${p.total} files embedded${p.detail ? `: ${path.basename(p.detail)}` : ''}`),
        });
        return { ...report, errors: report.errors.slice(0, 100) };
      });
    case 'scan':
      return withEngine(req.dataDir, req.config, async (engine) => {
        const report = await engine.scan(req.paths, {
          baseline: req.baseline,
          source: req.source,
          signal,
          onProgress: (p) => progress(fraction(p), `${p.done} of ${p.total} files scanned`),
        });
        return {
          summary: report.summary,
          errors: report.errors.slice(0, 100),
          items: report.items.slice(0, 500).map((i) => ({ sha256: i.sha256, decision: i.decision, risk: i.risk, path: i.path })),
        };
      });
    case 'rescan':
      return withEngine(req.dataDir, req.config, (engine) => rescan(engine, req.sha256s, req.baseline, progress, signal));
    case 'demo':
      return withEngine(req.dataDir, req.config, async (engine) => {
        const report = await loadDemoSet(engine, {
          signal,
          onProgress: progress,
          train: () => engine.train({ signal, onProgress: (p) => progress(0.5 + 0.35 * fraction(p), `demo: ${p.stage}`) }),
        });
        return { summary: report.summary, errors: report.errors.slice(0, 20) };
      });
  }
}

if (process.send) {
  process.on('message', (msg: ChildRequest) => {
    if (msg.type === 'cancel') {
      // Seen between batches and fits; the parent kills this process if one runs long.
      controller.abort(new Error('cancelled'));
      return;
    }
    if (msg.type !== 'run') return;
    // Disconnect only once the last message is flushed, so the parent always gets it.
    const last = (m: ChildMessage) => process.send?.(m, undefined, undefined, () => process.disconnect?.());
    run(msg).then(
      (result) => last({ type: 'done', result }),
      (err: unknown) => last({ type: 'error', message: err instanceof Error ? err.message : String(err) }),
    );
  });
  // The parent going away means nobody wants the result: stop.
  process.on('disconnect', () => setTimeout(() => process.exit(0), 100).unref());
}
