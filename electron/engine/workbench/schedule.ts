// Scheduled retraining (baseline.update_frequency_hours, baseline.max_age_days).
//
// A retrain is due for a baseline when its active detector set is older than the update
// frequency and something has changed since it was trained: analysts' relabels are pending
// (benign items to join, malicious members to leave), or items were added to the baseline.
// A set older than max_age_days with nothing pending is stale (the Baselines view says so);
// retraining it on the same items would only reproduce it, so the scheduler leaves it alone.
//
// Relabelling is also how a patient attacker would poison the baseline, so the scheduler
// never acknowledges poisoning warnings on anyone's behalf: a plan that carries one is left
// for an analyst, and the skip is written to the audit log (once per distinct plan).
import { createHash } from 'node:crypto';
import type { Store } from '../store/store.js';
import type { RetrainPlan } from '../../../shared/api/schemas.js';

export interface ScheduleDecision {
  baseline: string;
  action: 'retrain' | 'skip' | 'none';
  reason: string;
}

export interface SchedulerDeps {
  store: Store;
  updateFrequencyHours: number;
  plan(baseline: string): Promise<RetrainPlan>;
  /** Starts the same retrain job the API starts; throws (ApiError conflict) on poisoning warnings. */
  retrain(baseline: string): Promise<void>;
  /** True while a retrain (any origin) is queued or running for the baseline. */
  retrainPending(baseline: string): boolean;
}

export class RetrainScheduler {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private readonly skipped = new Map<string, string>();

  constructor(private readonly deps: SchedulerDeps) {}

  /** Checks now and then every `intervalMs` (the timer never keeps the process alive). */
  start(intervalMs: number): void {
    if (this.deps.updateFrequencyHours <= 0 || this.timer) return;
    this.timer = setInterval(() => void this.check().catch(() => undefined), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One pass over every baseline; `now` is injectable so tests need not wait for hours. */
  async check(now = Date.now()): Promise<ScheduleDecision[]> {
    if (this.running || this.deps.updateFrequencyHours <= 0) return [];
    this.running = true;
    try {
      const decisions: ScheduleDecision[] = [];
      for (const b of this.deps.store.listBaselines()) decisions.push(await this.checkBaseline(b.id, b.name, b.n_items, now));
      return decisions;
    } finally {
      this.running = false;
    }
  }

  private async checkBaseline(id: number, name: string, nItems: number, now: number): Promise<ScheduleDecision> {
    const active = this.deps.store.activeDetectorSet(id);
    if (!active) return { baseline: name, action: 'none', reason: 'never trained (train it once by hand)' };
    const ageHours = (now - Date.parse(active.created_at)) / 3_600_000;
    if (ageHours < this.deps.updateFrequencyHours) {
      return { baseline: name, action: 'none', reason: `active set is ${ageHours.toFixed(1)} h old (retrain every ${this.deps.updateFrequencyHours} h)` };
    }
    if (this.deps.retrainPending(name)) return { baseline: name, action: 'none', reason: 'a retrain is already queued or running' };
    const plan = await this.deps.plan(name);
    const added = nItems - active.n_items;
    if (plan.joining.length === 0 && plan.leaving.length === 0 && added <= 0) {
      return { baseline: name, action: 'none', reason: 'nothing changed since the active set was trained' };
    }
    try {
      await this.deps.retrain(name);
      this.skipped.delete(name);
      return { baseline: name, action: 'retrain', reason: `${plan.joining.length} joining, ${plan.leaving.length} leaving, ${Math.max(0, added)} added since training` };
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      const key = createHash('sha256')
        .update(JSON.stringify([plan.joining.map((j) => j.sha256), plan.leaving.map((l) => l.sha256), reason]))
        .digest('hex');
      if (this.skipped.get(name) !== key) {
        this.skipped.set(name, key);
        this.deps.store.audit('scheduler', 'workbench.retrain.skipped', `baseline:${name}`, { reason });
      }
      return { baseline: name, action: 'skip', reason };
    }
  }
}
