// Detector-set versions: what each measured (FPR on its own held-out baseline items, TPR on
// the items analysts labelled malicious), what a retrain would change, the retrain itself,
// activation and roll-back, and side-by-side comparison of two versions.
//
// Malicious labels measure; they never move thresholds. Thresholds come from the
// configuration and the calibration on the baseline, so a version's TPR is an honest
// estimate only as long as nobody tunes against the labelled set.
import { ApiError, type ParsedReq, type Res } from '../../../shared/api/contract.js';
import type { DetectorSetSummary, RetrainPlan } from '../../../shared/api/schemas.js';
import type { LabelValue } from '../../../shared/types.js';
import type { Store, DetectorSetRow } from '../store/store.js';
import { DetectorSetCache, embeddingsFor, featuresFor, fprOf, scoreInSlices } from './detector-state.js';
import { clamp01, immediate, latestLabels, LATEST_VERDICTS_SQL, thresholdsOf } from './queries.js';

export const TPR_NOTE =
  'TPR = share of items whose latest label is malicious that this version scores at or above the review (block) threshold, ' +
  're-scored from their cached embeddings and stored features (an expensive signal whose features were not kept for an item ' +
  'is left out, as for an item it could not measure). Malicious labels only measure: they never change a threshold.';

export class Models {
  private readonly tprCache = new Map<string, { review: number; block: number } | null>();

  constructor(
    private readonly store: Store,
    private readonly sets: DetectorSetCache,
  ) {}

  baselineOf(name: string): { id: number; name: string } {
    const b = this.store.findBaseline(name);
    if (!b) throw new ApiError('not_found', `baseline '${name}' does not exist: import media into it first`);
    return b;
  }

  maliciousIds(): number[] {
    return [...latestLabels(this.store.db).entries()].filter(([, l]) => l.label === 'malicious').map(([id]) => id);
  }

  async tpr(row: DetectorSetRow, maliciousIds: number[], signal?: AbortSignal): Promise<{ review: number; block: number } | null> {
    if (maliciousIds.length === 0) return null;
    const key = `${row.id}:${maliciousIds.join(',')}`;
    if (this.tprCache.has(key)) return this.tprCache.get(key)!;
    const items = embeddingsFor(this.store, maliciousIds, row.encoder_id);
    let result: { review: number; block: number } | null = null;
    if (items.length > 0) {
      const { set } = this.sets.load(row.id);
      const features = featuresFor(this.store, set, row.encoder_id, items.map((i) => i.itemId));
      const scores = await scoreInSlices(set, items.map((i) => i.vector), { signal, features });
      const t = set.params.thresholds;
      result = {
        review: scores.filter((s) => s.risk >= t.review).length / scores.length,
        block: scores.filter((s) => s.risk >= t.block).length / scores.length,
      };
    }
    if (this.tprCache.size > 200) this.tprCache.clear();
    this.tprCache.set(key, result);
    return result;
  }

  async summary(row: DetectorSetRow, baselineName: string, maliciousIds: number[]): Promise<DetectorSetSummary> {
    let weights: Record<string, number> = {};
    let signals: string[] = [];
    let thresholds = thresholdsOf(row.config);
    try {
      const { set } = this.sets.load(row.id);
      weights = Object.fromEntries(Object.entries(set.params.weights).filter(([, w]) => typeof w === 'number')) as Record<string, number>;
      signals = [...set.allSignals];
      thresholds = set.params.thresholds;
    } catch {
      // A set this build cannot load (another engine version): list it without details.
    }
    const stats = safeJson(row.stats) as { train_seconds?: unknown };
    const tpr = await this.tpr(row, maliciousIds).catch(() => null);
    const nMalicious = maliciousIds.length ? embeddingsFor(this.store, maliciousIds, row.encoder_id).length : 0;
    return {
      id: row.id,
      version: row.version,
      baseline: baselineName,
      created_at: row.created_at,
      n_items: row.n_items,
      encoder_id: row.encoder_id,
      active: row.active === 1,
      age_days: Math.round(((Date.now() - Date.parse(row.created_at)) / 86_400_000) * 100) / 100,
      fpr: fprOf(row.stats),
      tpr,
      n_malicious: nMalicious,
      thresholds,
      weights,
      signals,
      train_seconds: typeof stats?.train_seconds === 'number' ? stats.train_seconds : null,
    };
  }

  async list(baselineName: string): Promise<Res<'detectorSets'>> {
    const b = this.store.findBaseline(baselineName);
    if (!b) return { baseline: baselineName, active_id: null, versions: [], tpr_note: TPR_NOTE };
    const rows = this.store.listDetectorSets(b.id);
    const malicious = this.maliciousIds();
    const versions: DetectorSetSummary[] = [];
    for (const r of rows.reverse()) versions.push(await this.summary(r, b.name, malicious));
    return { baseline: b.name, active_id: versions.find((v) => v.active)?.id ?? null, versions, tpr_note: TPR_NOTE };
  }

  /** What a retrain would do now: who joins, who leaves, and what looks like poisoning. */
  plan(baselineName: string, encoderId: string | null): RetrainPlan {
    const db = this.store.db;
    const b = this.store.findBaseline(baselineName);
    const baselineId = b?.id ?? -1;
    const members = new Set(
      (db.prepare('SELECT item_id FROM baseline_items WHERE baseline_id = ?').all(baselineId) as { item_id: number }[]).map((r) => r.item_id),
    );
    const active = b ? this.store.activeDetectorSet(b.id) : undefined;
    const enc = active?.encoder_id ?? encoderId;
    const labels = latestLabels(db);
    const verdictOf = db.prepare(`SELECT l.decision, l.risk FROM (${LATEST_VERDICTS_SQL}) l WHERE l.item_id = ?`);
    const shaOf = db.prepare('SELECT sha256 FROM items WHERE id = ?');
    const hasEmb = db.prepare('SELECT 1 FROM embeddings WHERE item_id = ? AND encoder_id = ?');
    const toPlanItem = (itemId: number, l: { label: LabelValue; analyst: string; created_at: string; reason: string | null }) => {
      const v = verdictOf.get(itemId) as { decision: 'allow' | 'review' | 'block'; risk: number } | undefined;
      return {
        sha256: (shaOf.get(itemId) as { sha256: string }).sha256,
        label: l.label,
        analyst: l.analyst,
        labelled_at: l.created_at,
        reason: l.reason,
        decision: v?.decision ?? null,
        risk: v ? clamp01(v.risk) : null,
        has_embedding: enc ? !!hasEmb.get(itemId, enc) : false,
      };
    };
    const joining: RetrainPlan['joining'] = [];
    const leaving: RetrainPlan['leaving'] = [];
    let malicious = 0;
    for (const [itemId, l] of labels) {
      if (l.label === 'malicious') malicious++;
      if (l.label === 'benign' && !members.has(itemId)) joining.push(toPlanItem(itemId, l));
      if (l.label === 'malicious' && members.has(itemId)) leaving.push(toPlanItem(itemId, l));
    }
    const before = members.size;
    return {
      baseline: baselineName,
      baseline_before: before,
      baseline_after: before + joining.length - leaving.length,
      joining,
      leaving,
      malicious_for_measurement: malicious,
      warnings: poisoningWarnings(joining, before),
      active: active ? { id: active.id, version: active.version, fpr: fprOf(active.stats) } : null,
    };
  }

  /** Applies a plan's membership changes; returns what to undo if the training fails. */
  applyMembership(plan: RetrainPlan, baselineName: string, analyst: string): { joined: number[]; left: number[] } {
    const db = this.store.db;
    return immediate(db, () => {
      const baselineId = this.store.ensureBaseline(baselineName);
      const joined: number[] = [];
      const left: number[] = [];
      for (const j of plan.joining) {
        const item = this.store.itemBySha(j.sha256);
        if (item && this.store.addToBaseline(baselineId, item.id)) joined.push(item.id);
      }
      for (const l of plan.leaving) {
        const item = this.store.itemBySha(l.sha256);
        if (!item) continue;
        const info = db.prepare('DELETE FROM baseline_items WHERE baseline_id = ? AND item_id = ?').run(baselineId, item.id);
        if (info.changes > 0) left.push(item.id);
      }
      db.prepare('UPDATE baselines SET updated_at = ? WHERE id = ?').run(new Date().toISOString(), baselineId);
      this.store.audit(analyst, 'baseline.relabel.apply', baselineName, {
        joined: plan.joining.map((j) => j.sha256),
        left: plan.leaving.map((l) => l.sha256),
        warnings: plan.warnings.map((w) => w.kind),
      });
      return { joined, left };
    });
  }

  revertMembership(baselineName: string, change: { joined: number[]; left: number[] }, reason: string): void {
    const db = this.store.db;
    immediate(db, () => {
      const b = this.baselineOf(baselineName);
      for (const id of change.joined) db.prepare('DELETE FROM baseline_items WHERE baseline_id = ? AND item_id = ?').run(b.id, id);
      for (const id of change.left) this.store.addToBaseline(b.id, id);
      this.store.audit('system', 'baseline.relabel.revert', baselineName, { joined: change.joined.length, left: change.left.length, reason });
    });
  }

  activate(id: number, analyst: string): { row: DetectorSetRow; previous: number | null } {
    const row = this.store.detectorSet(id);
    if (!row) throw new ApiError('not_found', `detector set ${id} does not exist`);
    const previous = this.store.activeDetectorSet(row.baseline_id)?.id ?? null;
    immediate(this.store.db, () => {
      this.store.activateDetectorSet(id);
      this.store.audit(analyst, 'detector_set.activate.by', `detector_set:${id}`, { version: row.version, previous });
    });
    return { row: this.store.detectorSet(id)!, previous };
  }

  rollback(baselineName: string, analyst: string): { row: DetectorSetRow; previous: number | null } {
    const b = this.baselineOf(baselineName);
    const active = this.store.activeDetectorSet(b.id);
    if (!active) throw new ApiError('conflict', `baseline '${baselineName}' has no active detector set to roll back from`);
    const older = this.store.listDetectorSets(b.id).filter((r) => r.version < active.version);
    const target = older[older.length - 1];
    if (!target) throw new ApiError('conflict', `v${active.version} is the oldest version of baseline '${baselineName}': nothing to roll back to`);
    return this.activate(target.id, analyst);
  }

  async compare(req: ParsedReq<'compare'>, signal?: AbortSignal): Promise<Res<'compare'>> {
    const ra = this.store.detectorSet(req.a);
    const rb = this.store.detectorSet(req.b);
    if (!ra) throw new ApiError('not_found', `detector set ${req.a} does not exist`);
    if (!rb) throw new ApiError('not_found', `detector set ${req.b} does not exist`);
    if (ra.encoder_id !== rb.encoder_id) {
      throw new ApiError('conflict', `detector sets ${req.a} and ${req.b} use different encoders (${ra.encoder_id} vs ${rb.encoder_id}): their scores are not comparable`);
    }
    const A = this.sets.load(ra.id);
    const B = this.sets.load(rb.id);
    const nameOf = (id: number) => (this.store.db.prepare('SELECT name FROM baselines WHERE id = ?').get(id) as { name: string } | undefined)?.name ?? '?';
    const malicious = this.maliciousIds();
    const sa = await this.summary(ra, nameOf(ra.baseline_id), malicious);
    const sb = await this.summary(rb, nameOf(rb.baseline_id), malicious);

    // Everything that shapes scoring except the data: a difference here is a configuration change.
    const { signals: _sa, ...paramsA } = A.set.params;
    const { signals: _sb, ...paramsB } = B.set.params;
    void _sa;
    void _sb;
    const flatA = flatten({ signals: A.set.allSignals.join(','), ...paramsA });
    const flatB = flatten({ signals: B.set.allSignals.join(','), ...paramsB });
    const params: Res<'compare'>['params'] = [];
    for (const key of [...new Set([...Object.keys(flatA), ...Object.keys(flatB)])].sort()) {
      if (flatA[key] !== flatB[key]) params.push({ key, a: flatA[key] ?? '—', b: flatB[key] ?? '—' });
    }
    const membersA = new Set(A.state.members.map((m) => m.sha256));
    const membersB = new Set(B.state.members.map((m) => m.sha256));
    let both = 0;
    for (const s of membersA) if (membersB.has(s)) both++;

    const labels = latestLabels(this.store.db);
    const recent = (
      this.store.db.prepare(`SELECT item_id FROM (${LATEST_VERDICTS_SQL}) ORDER BY id DESC LIMIT ?`).all(req.sample) as { item_id: number }[]
    ).map((r) => r.item_id);
    const wanted = [...new Set([...labels.keys(), ...recent])];
    const items = embeddingsFor(this.store, wanted, ra.encoder_id);
    const ids = items.map((i) => i.itemId);
    const scoresA = await scoreInSlices(A.set, items.map((i) => i.vector), { signal, features: featuresFor(this.store, A.set, ra.encoder_id, ids) });
    const scoresB = await scoreInSlices(B.set, items.map((i) => i.vector), { signal, features: featuresFor(this.store, B.set, rb.encoder_id, ids) });
    const transitions: Record<string, Record<string, number>> = {};
    for (const from of ['allow', 'review', 'block']) transitions[from] = { allow: 0, review: 0, block: 0 };
    const changed: Res<'compare'>['items']['changed'] = [];
    items.forEach((it, i) => {
      const a = scoresA[i];
      const b = scoresB[i];
      transitions[a.decision][b.decision]++;
      if (a.decision !== b.decision) {
        changed.push({
          sha256: it.sha256,
          label: labels.get(it.itemId)?.label ?? null,
          a: { decision: a.decision, risk: clamp01(a.risk) },
          b: { decision: b.decision, risk: clamp01(b.risk) },
        });
      }
    });
    changed.sort((x, y) => Math.abs(y.b.risk - y.a.risk) - Math.abs(x.b.risk - x.a.risk));
    return {
      a: sa,
      b: sb,
      params,
      members: { only_a: membersA.size - both, only_b: membersB.size - both, both },
      items: { n: items.length, transitions, changed: changed.slice(0, 200) },
      note:
        `${items.length} items (every labelled item and the ${req.sample} most recently scanned) re-scored by both versions from cached embeddings ` +
        'and stored features; an expensive signal whose features were not kept for an item is left out, so a risk here can differ from the ' +
        'verdict recorded at scan time. An item that is a baseline member of one version is its own nearest neighbour there, which is what that version would do.',
    };
  }
}

/** The patterns of a baseline being poisoned through relabelling, in plain words. */
export function poisoningWarnings(joining: RetrainPlan['joining'], baselineSize: number): RetrainPlan['warnings'] {
  const warnings: RetrainPlan['warnings'] = [];
  const n = joining.length;
  if (n === 0) return warnings;
  const bulkAt = Math.max(10, Math.ceil(0.05 * baselineSize));
  if (n >= bulkAt) {
    warnings.push({
      kind: 'bulk',
      message: `${n} relabelled items would join the baseline at once (threshold ${bulkAt}): relabelling is how a patient attacker poisons a baseline; review them as a set`,
      sha256s: joining.map((j) => j.sha256),
    });
  }
  if (baselineSize > 0 && n / baselineSize > 0.1) {
    warnings.push({
      kind: 'large_share',
      message: `the baseline would grow by ${Math.round((n / baselineSize) * 100)}% (${baselineSize} → ${baselineSize + n}) from relabels alone`,
      sha256s: joining.map((j) => j.sha256),
    });
  }
  const byAnalyst = new Map<string, string[]>();
  for (const j of joining) byAnalyst.set(j.analyst, [...(byAnalyst.get(j.analyst) ?? []), j.sha256]);
  if (n >= 5 && byAnalyst.size === 1) {
    const [who, list] = [...byAnalyst.entries()][0];
    warnings.push({
      kind: 'single_analyst',
      message: `all ${n} relabels come from one analyst (${who}): a second analyst should confirm before they become baseline`,
      sha256s: list,
    });
  }
  const times = joining.map((j) => Date.parse(j.labelled_at)).sort((a, b) => a - b);
  let burst = 0;
  for (let i = 0, j = 0; i < times.length; i++) {
    while (times[i] - times[j] > 10 * 60_000) j++;
    burst = Math.max(burst, i - j + 1);
  }
  if (burst >= 10) {
    warnings.push({ kind: 'burst', message: `${burst} benign labels were given within 10 minutes`, sha256s: joining.map((j) => j.sha256) });
  }
  const blocked = joining.filter((j) => j.decision === 'block');
  if (blocked.length > 0) {
    warnings.push({
      kind: 'high_risk',
      message: `${blocked.length} of the joining items are blocked by the current version: each becomes "normal" once inside the baseline`,
      sha256s: blocked.map((j) => j.sha256),
    });
  }
  const noReason = joining.filter((j) => !j.reason?.trim());
  if (noReason.length > 0) {
    warnings.push({ kind: 'no_reason', message: `${noReason.length} benign labels carry no reason`, sha256s: noReason.map((j) => j.sha256) });
  }
  return warnings;
}

/** Warnings a retrain must have acknowledged (a missing reason is only a note). */
export function blockingWarnings(plan: RetrainPlan): RetrainPlan['warnings'] {
  return plan.warnings.filter((w) => w.kind !== 'no_reason');
}

function flatten(obj: unknown, prefix = '', out: Record<string, string> = {}): Record<string, string> {
  if (obj && typeof obj === 'object' && !Array.isArray(obj)) {
    for (const [k, v] of Object.entries(obj as Record<string, unknown>)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else {
    out[prefix] = JSON.stringify(obj);
  }
  return out;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}
