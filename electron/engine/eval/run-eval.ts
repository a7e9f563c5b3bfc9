// `parallax eval`: how well the active detector set separates attacked items from clean ones,
// per signal, fused, and against the mitigation's reference fusion, per attack family.
//
// Every item is scanned through the engine (so the fused verdict is exactly what a scan
// gives, tiering included, and is recorded with source 'eval'), with every expensive signal
// measured as well, so that each signal can be judged on every item even where the tier
// policy would have skipped it.
//
// Scores ranked (higher = more suspicious):
//  - fused: the surprise −log10(p_f). Unlike risk it does not saturate at 1, so a run where
//    most attacks are far past the block line still ranks them against the clean tail;
//  - reference: the reference formula's value (0.6·IF + 0.3·kNN risk + 0.1·flag);
//  - each signal: its raw score (its p-value is a decreasing function of it).
// Benign controls (manifest family 'benign', and --control folders) are not attacks: they
// are reported with their own rates and metrics but never pooled into the attack columns.
import fs from 'node:fs';
import path from 'node:path';

import { decideAt, decisionRates, detectionMetrics, effectiveShiftThreshold, type DecisionRates, type DetectionMetrics } from '../../../shared/eval/metrics.js';
import type { Engine, EngineInfo, ItemError, ScanItem } from '../engine.js';

export const REDTEAM_FORMAT = 'parallax.redteam/1';

export interface AttackSet {
  dir: string;
  /** Folder name, the key under `sets`. */
  name: string;
  attack: string;
  family: string;
  eps: number | null;
  /** Benign control (not an attack). */
  control: boolean;
  /** Files to scan: the manifest's outputs, else every media file in the folder. */
  files: string[];
  /** How far the red team moved each file's embedding (manifest embedding_shift), by file. */
  shifts: Map<string, number>;
}

export interface ScoredItem {
  path: string;
  decision: 'allow' | 'review' | 'block';
  fused: number;
  reference: number | null;
  /** Raw score per signal. */
  signals: Record<string, number>;
  /** Calibrated p-value per signal. */
  p: Record<string, number>;
  /** The red team's embedding shift for this item, where its manifest says. */
  embedding_shift: number | null;
}

export interface MetricsWithRates extends DetectionMetrics, DecisionRates {}

export interface GroupReport {
  n: number;
  fused: MetricsWithRates;
  reference: MetricsWithRates | null;
  signals: Record<string, DetectionMetrics>;
  /** Fused metrics over the effective attacks only (see EvalReport.effective); null when none or no line. */
  effective: (DetectionMetrics & { n: number }) | null;
}

export interface EvalReport {
  format: 'parallax.eval/1';
  engine: EngineInfo;
  thresholds: { review: number; block: number };
  definitions: Record<string, string>;
  clean: { dir: string } & DecisionRates & { reference: DecisionRates | null };
  /**
   * The effective-attack line: attacks whose embedding shift exceeds the 95th percentile of
   * the benign controls' shifts (from their manifests); null without ≥ 20 such shifts.
   */
  effective: { min_embedding_shift: number; quantile: number; n_benign: number } | null;
  /** All attacked (non-control) items pooled. */
  fused: MetricsWithRates | null;
  reference: MetricsWithRates | null;
  signals: Record<string, DetectionMetrics>;
  families: Record<string, GroupReport & { control: boolean; sets: string[] }>;
  sets: Record<string, GroupReport & { attack: string; family: string; eps: number | null; control: boolean; dir: string }>;
  /** Every scored item (which attacks got through, and on which signals), per set by name. */
  items: { clean: ScoredItem[]; sets: Record<string, ScoredItem[]> };
  errors: ItemError[];
}

/** Reads a red-team folder: its manifest if it has one, else every file in it as one family. */
export function readAttackSet(dir: string, opts: { control?: boolean } = {}): AttackSet {
  const abs = path.resolve(dir);
  if (!fs.existsSync(abs) || !fs.statSync(abs).isDirectory()) throw new Error(`${dir}: not a folder`);
  const name = path.basename(abs);
  const manifestPath = path.join(abs, 'manifest.json');
  if (fs.existsSync(manifestPath)) {
    const m = JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as {
      format?: string; attack?: string; family?: string; eps?: number | null; items?: { output?: string; embedding_shift?: unknown }[];
    };
    if (m.format !== REDTEAM_FORMAT) throw new Error(`${manifestPath}: format is '${String(m.format)}', expected '${REDTEAM_FORMAT}'`);
    if (!Array.isArray(m.items)) throw new Error(`${manifestPath}: no items`);
    const shifts = new Map<string, number>();
    const files = m.items.map((it, i) => {
      if (typeof it.output !== 'string') throw new Error(`${manifestPath}: item ${i} has no output`);
      const file = path.join(abs, it.output);
      if (typeof it.embedding_shift === 'number' && Number.isFinite(it.embedding_shift)) shifts.set(file, it.embedding_shift);
      return file;
    });
    const family = m.family ?? m.attack ?? name;
    return {
      dir: abs,
      name,
      attack: m.attack ?? name,
      family,
      eps: typeof m.eps === 'number' ? m.eps : null,
      control: opts.control ?? (family === 'benign' || (m.attack ?? '').startsWith('benign')),
      files,
      shifts,
    };
  }
  return { dir: abs, name, attack: name, family: name, eps: null, control: opts.control ?? false, files: [abs], shifts: new Map() };
}

export async function runEval(
  engine: Engine,
  opts: {
    clean: string;
    attacked: AttackSet[];
    baseline?: string;
    onProgress?: (line: string) => void;
    signal?: AbortSignal;
  },
): Promise<EvalReport> {
  const log = opts.onProgress ?? (() => undefined);
  const scanOpts = { baseline: opts.baseline, source: 'eval', allSignals: true, signal: opts.signal };
  log(`eval: scanning clean items in ${opts.clean}`);
  const cleanScan = await engine.scan([opts.clean], scanOpts);
  if (cleanScan.items.length === 0) throw new Error(`eval: no clean item could be scanned in ${opts.clean}`);
  const errors: ItemError[] = [...cleanScan.errors];
  const thresholds = engine.config.embedding_anomaly_detection.thresholds;
  const clean = cleanScan.items.map((it) => scored(it));
  const perSet = new Map<string, ScoredItem[]>();
  for (const set of opts.attacked) {
    const what = set.files.length === 1 && set.files[0] === set.dir ? `the folder ${set.dir}` : `${set.files.length} items of ${set.name}`;
    log(`eval: scanning ${what} (${set.family}${set.control ? ', control' : ''})`);
    const r = await engine.scan(set.files, scanOpts);
    errors.push(...r.errors);
    perSet.set(set.name, r.items.map((it) => scored(it, set.shifts)));
  }

  // The effective-attack line, from the benign controls' own shifts (shared/eval/metrics.ts).
  const benignShifts = opts.attacked.filter((s) => s.control).flatMap((s) => (perSet.get(s.name) ?? []).map((i) => i.embedding_shift)).filter((v): v is number => v !== null);
  const line = effectiveShiftThreshold(benignShifts, EFFECTIVE_QUANTILE);
  const effectiveOf = (items: ScoredItem[]): GroupReport['effective'] => {
    if (line === null) return null;
    const kept = items.filter((i) => i.embedding_shift !== null && i.embedding_shift > line);
    return kept.length === 0 ? null : { n: kept.length, ...detectionMetrics(kept.map((i) => i.fused), clean.map((i) => i.fused)) };
  };

  const group = (items: ScoredItem[]): GroupReport => ({
    n: items.length,
    fused: { ...detectionMetrics(items.map((i) => i.fused), clean.map((i) => i.fused)), ...decisionRates(items.map((i) => i.decision)) },
    reference: referenceMetrics(items, clean, thresholds),
    signals: signalMetrics(items, clean),
    effective: effectiveOf(items),
  });

  const attacks = opts.attacked.filter((s) => !s.control).flatMap((s) => perSet.get(s.name) ?? []);
  const pooled = attacks.length > 0 ? group(attacks) : null;
  const families: EvalReport['families'] = {};
  for (const family of [...new Set(opts.attacked.map((s) => s.family))]) {
    const members = opts.attacked.filter((s) => s.family === family);
    const items = members.flatMap((s) => perSet.get(s.name) ?? []);
    if (items.length === 0) continue;
    families[family] = { ...group(items), control: members.every((s) => s.control), sets: members.map((s) => s.name) };
  }
  const sets: EvalReport['sets'] = {};
  for (const s of opts.attacked) {
    const items = perSet.get(s.name) ?? [];
    if (items.length === 0) continue;
    sets[s.name] = { ...group(items), attack: s.attack, family: s.family, eps: s.eps, control: s.control, dir: s.dir };
  }
  const refClean = clean.every((i) => i.reference !== null)
    ? decisionRates(clean.map((i) => decideAt(i.reference!, thresholds)))
    : null;
  return {
    format: 'parallax.eval/1',
    engine: cleanScan.engine,
    thresholds: { review: thresholds.review, block: thresholds.block },
    definitions: {
      scores: 'fused: −log10 of the fused p-value (the verdict the scan recorded, tiering included); reference: 0.6·normalised IF + 0.3·kNN risk + 0.1·[IF > 0.6]; signals: raw scores, every expensive signal measured on every item',
      auroc: 'P(attacked score > clean score) + ½·P(equal)',
      tpr_at_fpr: 'm = ⌊f·n_clean⌋; τ = the (m+1)-th largest clean score (the smallest score with at most m clean scores above it); TPR = share of attacked items with score > τ',
      block_rate: 'share of items with decision block at the configured thresholds (the reference column applies the same thresholds to its own score)',
      review_rate: 'share of items with decision review or block',
      pooled: 'fused/reference/signals pool every attacked set that is not a benign control',
      effective: 'attacks whose red-team embedding_shift exceeds the 95th percentile of the benign controls\' shifts; the fused metrics over those alone (an attack that moves the embedding no more than a benign edit steers nothing)',
      items: 'every scored item: its decision, fused and reference scores, and each signal\'s raw score and p-value',
    },
    clean: { dir: path.resolve(opts.clean), ...decisionRates(clean.map((i) => i.decision)), reference: refClean },
    effective: line === null ? null : { min_embedding_shift: line, quantile: EFFECTIVE_QUANTILE, n_benign: benignShifts.length },
    fused: pooled?.fused ?? null,
    reference: pooled?.reference ?? null,
    signals: pooled?.signals ?? {},
    families,
    sets,
    items: { clean, sets: Object.fromEntries(perSet) },
    errors,
  };
}

/** Benign-shift quantile above which an attack counts as effective. */
export const EFFECTIVE_QUANTILE = 0.95;

function scored(item: ScanItem, shifts?: Map<string, number>): ScoredItem {
  const all = item.all_signals ?? item.signals;
  return {
    path: item.path ?? item.sha256,
    decision: item.decision,
    fused: surprise(item.p),
    reference: item.reference ?? null,
    signals: Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.raw])),
    p: Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.p])),
    embedding_shift: (item.path !== null ? shifts?.get(item.path) : undefined) ?? null,
  };
}

/** −log10 p, finite even when p underflowed to 0. */
function surprise(p: number): number {
  return -Math.log10(Math.max(p, 1e-300));
}

function referenceMetrics(items: ScoredItem[], clean: ScoredItem[], thresholds: { review: number; block: number }): MetricsWithRates | null {
  if (items.some((i) => i.reference === null) || clean.some((i) => i.reference === null)) return null;
  return {
    ...detectionMetrics(items.map((i) => i.reference!), clean.map((i) => i.reference!)),
    ...decisionRates(items.map((i) => decideAt(i.reference!, thresholds))),
  };
}

/** Per signal, over the items where both sides have it (every signal, with allSignals). */
function signalMetrics(items: ScoredItem[], clean: ScoredItem[]): Record<string, DetectionMetrics> {
  const names = [...new Set([...items, ...clean].flatMap((i) => Object.keys(i.signals)))];
  const out: Record<string, DetectionMetrics> = {};
  for (const name of names) {
    const a = items.map((i) => i.signals[name]).filter((v): v is number => v !== undefined);
    const c = clean.map((i) => i.signals[name]).filter((v): v is number => v !== undefined);
    if (a.length > 0 && c.length > 0) out[name] = detectionMetrics(a, c);
  }
  return out;
}
