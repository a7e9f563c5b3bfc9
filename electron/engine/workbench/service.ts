// The workbench service: the API contract implemented on top of the Engine. Both transports
// (the HTTP/WebSocket server and the Electron utility process) hand it method names and raw
// payloads; it validates the request, runs the handler, and validates what it returns.
import os from 'node:os';
import path from 'node:path';
import type { ParallaxConfig } from '../../../shared/config.js';
import { ApiError, parseRequest, parseResponse, type ParsedReq, type Res } from '../../../shared/api/contract.js';
import { isApiMethod, type ApiMethod } from '../../../shared/api/methods.js';
import type { RetrainResult } from '../../../shared/api/schemas.js';
import { bytesToBase64 } from '../../../shared/math/base64.js';
import { CancelledError } from '../concurrency.js';
import { DEFAULT_BASELINE, type Engine } from '../engine.js';
import { ENGINE_VERSION } from '../version.js';
import { exportBundle, importBundle } from './bundle.js';
import { DetectorSetCache } from './detector-state.js';
import { computeDrift } from './drift.js';
import { EventBus } from './events.js';
import { JobManager, type JobContext } from './jobs.js';
import { MapBuilder } from './map.js';
import { MediaLibrary, type MediaBytes } from './media.js';
import { blockingWarnings, Models } from './models.js';
import * as Q from './queries.js';
import { SimilarityIndex } from './similar.js';
import { runInEngineChild } from './child-runner.js';
import { RetrainScheduler } from './schedule.js';
import type { PreviewOutcome, RescanOutcome, RunRequest } from './engine-child.js';

export interface WorkbenchOptions {
  engine: Engine;
  /** Passed on to the training process when the engine was opened with an explicit config. */
  config?: ParallaxConfig;
  /** Who acts when a request names nobody (the OS user by default). */
  analyst?: string;
  /** 'http' or 'ipc': reported by status so a bug report says which path was taken. */
  transport: string;
  /** Load the demo set when the data folder has no baseline at all (first start). */
  demo?: boolean;
  /** How often the retrain schedule is checked; 0 turns the schedule off. Default 5 minutes. */
  scheduleCheckMs?: number;
}

type Handlers = { [M in ApiMethod]: (req: ParsedReq<M>) => Promise<Res<M>> };

export class WorkbenchService {
  readonly events = new EventBus();
  readonly jobs: JobManager;
  readonly media: MediaLibrary;
  readonly scheduler: RetrainScheduler;
  private readonly sets: DetectorSetCache;
  private readonly models: Models;
  private readonly similarity: SimilarityIndex;
  private readonly mapBuilder: MapBuilder;
  private readonly analyst: string;
  private readonly handlers: Handlers;

  private constructor(private readonly opts: WorkbenchOptions) {
    const { engine } = opts;
    this.jobs = new JobManager(engine.store.db, this.events);
    this.media = new MediaLibrary(engine.store, path.join(engine.dataDir, 'thumbnails'), engine.limits);
    this.sets = new DetectorSetCache(engine.store);
    this.models = new Models(engine.store, this.sets);
    this.similarity = new SimilarityIndex(engine.store);
    this.mapBuilder = new MapBuilder(engine.store);
    this.analyst = opts.analyst ?? defaultAnalyst();
    this.handlers = this.makeHandlers();
    this.scheduler = new RetrainScheduler({
      store: engine.store,
      updateFrequencyHours: engine.config.embedding_anomaly_detection.baseline.update_frequency_hours,
      plan: async (baseline) => this.models.plan(baseline, await this.encoderId(baseline).catch(() => null)),
      retrain: async (baseline) => {
        await this.call('retrain', { baseline, analyst: 'scheduler' });
      },
      retrainPending: (baseline) =>
        (engine.store.db.prepare(`SELECT params FROM jobs WHERE kind = 'retrain' AND state IN ('queued','running')`).all() as { params: string }[]).some(
          (j) => (JSON.parse(j.params) as { baseline?: string }).baseline === baseline,
        ),
    });
  }

  static async create(opts: WorkbenchOptions): Promise<WorkbenchService> {
    const service = new WorkbenchService(opts);
    service.jobs.recoverInterrupted({
      'baseline-import': (p) => service.baselineImportRun(p as ParsedReq<'baselineImport'>),
      scan: (p) => service.scanRun(p as ParsedReq<'scan'>),
    });
    if (opts.demo && opts.engine.store.listBaselines().length === 0) service.startDemo();
    const every = opts.scheduleCheckMs ?? 5 * 60_000;
    if (every > 0) service.scheduler.start(every);
    // Loading the encoder's session blocks for a moment: do it now, not in someone's request.
    void opts.engine.encoder().catch(() => undefined);
    return service;
  }

  get engine(): Engine {
    return this.opts.engine;
  }

  /** One API call from any transport: validated in, validated out, errors as ApiError. */
  async call(method: string, payload: unknown): Promise<unknown> {
    if (!isApiMethod(method)) throw new ApiError('not_found', `no API method '${method}'`);
    const req = parseRequest(method, payload);
    try {
      const res = await (this.handlers[method] as (r: unknown) => Promise<unknown>)(req);
      return parseResponse(method, res);
    } catch (err) {
      throw toApiError(err);
    }
  }

  async mediaBytes(sha256: string, variant: 'thumb' | 'full'): Promise<MediaBytes> {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new ApiError('bad_request', `'${sha256}' is not a sha256`);
    return this.media.get(sha256, variant);
  }

  async close(): Promise<void> {
    this.scheduler.stop();
    await this.jobs.shutdown();
  }

  // ---- helpers -------------------------------------------------------------------------------

  private async encoderId(baseline = DEFAULT_BASELINE): Promise<string> {
    const b = this.engine.store.findBaseline(baseline);
    const active = b ? this.engine.store.activeDetectorSet(b.id) : undefined;
    if (active) return active.encoder_id;
    return (await this.engine.encoder()).id;
  }

  private auditChecked: { at: number; rows: number; ok: boolean } | null = null;

  /** The audit chain check, at most every 30 s unless rows were added (it reads every row). */
  private auditChainOk(): boolean {
    const rows = (this.engine.store.db.prepare('SELECT COUNT(*) AS n FROM audit_log').get() as { n: number }).n;
    const c = this.auditChecked;
    if (c && c.rows === rows && Date.now() - c.at < 30_000) return c.ok;
    if (c && c.ok && Date.now() - c.at < 30_000) return true;
    const ok = this.engine.store.verifyAudit() === null;
    this.auditChecked = { at: Date.now(), rows, ok };
    return ok;
  }

  private who(analyst: string | undefined): string {
    return analyst?.trim() || this.analyst;
  }

  private changed(what: 'queue' | 'items' | 'models' | 'baselines', sha256s?: string[]): void {
    this.events.emit({ type: 'changed', what, ...(sha256s ? { sha256s } : {}) });
  }

  /** What every engine child needs to open the same engine as this one. */
  private child<T extends Omit<RunRequest, 'type' | 'dataDir' | 'config'>>(req: T): RunRequest {
    return { type: 'run', dataDir: this.engine.dataDir, config: this.opts.config, ...req } as RunRequest;
  }

  private startDemo(): void {
    this.jobs.submit('demo', { source: 'models/demo' }, async (ctx) => {
      const result = await runInEngineChild(this.child({ mode: 'demo' }), { signal: ctx.signal, onProgress: (f, d) => ctx.progress(f, d) });
      this.changed('baselines');
      this.changed('models');
      this.changed('queue');
      return result;
    });
  }

  private baselineImportRun(req: ParsedReq<'baselineImport'>) {
    return async (ctx: JobContext) => {
      const report = (await runInEngineChild(this.child({ mode: 'baseline-add', baseline: req.baseline, paths: req.paths }), {
        signal: ctx.signal,
        onProgress: (f, d) => ctx.progress(f, d),
      })) as { added: number; errors: unknown[] };
      Q.immediate(this.engine.store.db, () =>
        this.engine.store.audit(this.who(req.analyst), 'workbench.baseline.import', req.baseline, { paths: req.paths, added: report.added, errors: report.errors.length }),
      );
      this.changed('baselines');
      return report;
    };
  }

  private scanRun(req: ParsedReq<'scan'>) {
    return async (ctx: JobContext) => {
      const result = await runInEngineChild(this.child({ mode: 'scan', baseline: req.baseline, source: req.source, paths: req.paths }), {
        signal: ctx.signal,
        onProgress: (f, d) => ctx.progress(f, d),
      });
      this.changed('queue');
      return result;
    };
  }

  /** Re-scores items with the active version from their verified media (in the engine child). */
  private async rescan(sha256s: readonly string[], baseline: string, ctx: JobContext, from: number, to: number): Promise<RescanOutcome> {
    return (await runInEngineChild(this.child({ mode: 'rescan', baseline, sha256s: [...sha256s] }), {
      signal: ctx.signal,
      onProgress: (f, d) => ctx.progress(from + (to - from) * f, d),
    })) as RescanOutcome;
  }

  // ---- handlers ------------------------------------------------------------------------------

  private makeHandlers(): Handlers {
    const store = this.engine.store;
    return {
      status: async () => {
        // Built here rather than through Engine.status: that walks the whole audit chain on
        // every call, and the page asks for status after every label.
        let encoder: Res<'status'>['encoder'];
        try {
          const e = await this.engine.encoder();
          encoder = { id: e.id, dim: e.dim, provider: e.provider, provider_note: e.providerNote, error: null };
        } catch (err) {
          encoder = { id: null, dim: null, provider: null, provider_note: null, error: err instanceof Error ? err.message : String(err) };
        }
        const maxAge = this.engine.config.embedding_anomaly_detection.baseline.max_age_days;
        return {
          version: ENGINE_VERSION,
          data_dir: this.engine.dataDir,
          schema_version: store.schemaVersion,
          encoder,
          active_baseline: DEFAULT_BASELINE,
          baselines: store.listBaselines().map((b) => {
            const ds = store.activeDetectorSet(b.id);
            const age = ds ? (Date.now() - Date.parse(ds.created_at)) / 86_400_000 : 0;
            return {
              name: b.name,
              items: b.n_items,
              detector_set: ds ? { id: ds.id, version: ds.version, created_at: ds.created_at, age_days: round2(age), stale: age > maxAge } : null,
            };
          }),
          verdicts: store.countVerdicts(),
          queue: Q.queueCounts(store),
          audit_chain_ok: this.auditChainOk(),
          analyst: this.analyst,
          transport: this.opts.transport,
        };
      },

      queue: async (req) => Q.queue(store, req),

      item: async (req) => Q.itemDetail(store, req.sha256, this.media.status(req.sha256)),

      label: async (req) => {
        const res = Q.label(store, [req.sha256], req.label, req.reason?.trim() || null, this.who(req.analyst));
        this.changed('items', [req.sha256]);
        this.changed('queue');
        return res;
      },

      labelBulk: async (req) => {
        const res = Q.label(store, req.sha256s, req.label, req.reason?.trim() || null, this.who(req.analyst));
        this.changed('items', req.sha256s.slice(0, 500));
        this.changed('queue');
        return res;
      },

      similar: async (req) => this.similarity.similar(req, await this.encoderId()),

      triage: async (req) => {
        const res = Q.setTriage(store, req, this.who(req.analyst));
        this.changed('items', req.sha256s.slice(0, 500));
        this.changed('queue');
        return res;
      },

      map: async (req) => {
        const baseline = req.baseline ?? DEFAULT_BASELINE;
        return this.mapBuilder.build(req, baseline, await this.encoderId(baseline));
      },

      drift: async (req) => {
        const baseline = req.baseline ?? DEFAULT_BASELINE;
        const b = store.findBaseline(baseline);
        const active = b ? store.activeDetectorSet(b.id) : undefined;
        return computeDrift(store, req, baseline, active?.encoder_id ?? null);
      },

      detectorSets: async (req) => this.models.list(req.baseline ?? DEFAULT_BASELINE),

      retrainPlan: async (req) => {
        const baseline = req.baseline ?? DEFAULT_BASELINE;
        return this.models.plan(baseline, await this.encoderId(baseline).catch(() => null));
      },

      retrainPreview: async (req) => {
        const baseline = req.baseline ?? DEFAULT_BASELINE;
        const plan = this.models.plan(baseline, await this.encoderId(baseline));
        if (!plan.active) throw new ApiError('conflict', `baseline '${baseline}' has no trained version yet: train it first, then preview relabels`);
        const activeId = plan.active.id;
        const idOf = (sha: string) => store.itemBySha(sha)!.id;
        const job = this.jobs.submit('retrain-preview', { baseline }, async (ctx) => {
          const outcome = (await runInEngineChild(
            this.child({
              mode: 'preview',
              baseline,
              activeId,
              joinIds: plan.joining.map((j) => idOf(j.sha256)),
              leaveIds: plan.leaving.map((l) => idOf(l.sha256)),
              maliciousIds: this.models.maliciousIds(),
            }),
            { signal: ctx.signal, onProgress: (f, d) => ctx.progress(f, d) },
          )) as PreviewOutcome;
          const activeRow = store.detectorSet(activeId)!;
          const riskBefore = new Map(plan.joining.map((j) => [idOf(j.sha256), j.risk]));
          const shaOf = new Map(plan.joining.map((j) => [idOf(j.sha256), j.sha256]));
          return {
            plan,
            current: { version: activeRow.version, fpr: plan.active!.fpr, tpr: outcome.current.tpr, n_items: activeRow.n_items },
            candidate: outcome.candidate,
            threshold_shift: outcome.threshold_shift,
            joining_after: outcome.joining_after.map((j) => ({ sha256: shaOf.get(j.itemId)!, risk_before: riskBefore.get(j.itemId) ?? null, risk_after: Q.clamp01(j.risk_after) })),
            seconds: outcome.seconds,
          };
        });
        return { job };
      },

      retrain: async (req) => {
        const baseline = req.baseline ?? DEFAULT_BASELINE;
        const analyst = this.who(req.analyst);
        const check = this.models.plan(baseline, await this.encoderId(baseline).catch(() => null));
        const blocking = blockingWarnings(check);
        if (blocking.length > 0 && !req.acknowledge_warnings) {
          throw new ApiError(
            'conflict',
            `retraining '${baseline}' carries ${blocking.length} poisoning warning(s): ${blocking.map((w) => w.message).join('; ')}. Review them (retrainPlan) and retrain with acknowledge_warnings`,
          );
        }
        const job = this.jobs.submit('retrain', { baseline, acknowledged: req.acknowledge_warnings, analyst }, async (ctx) => {
          // The plan is taken again now: labels may have changed while the job waited.
          const plan = this.models.plan(baseline, await this.encoderId(baseline).catch(() => null));
          const membership = this.models.applyMembership(plan, baseline, analyst);
          this.changed('baselines');
          let trained: { detector_set: { id: number; version: number; n_items: number }; seconds: number };
          try {
            trained = (await runInEngineChild(this.child({ mode: 'train', baseline }), {
              signal: ctx.signal,
              onProgress: (f, d) => ctx.progress(0.02 + 0.78 * f, d),
            })) as typeof trained;
          } catch (err) {
            this.models.revertMembership(baseline, membership, err instanceof Error ? err.message : String(err));
            this.changed('baselines');
            throw err;
          }
          Q.immediate(store.db, () =>
            store.audit(analyst, 'workbench.retrain', `detector_set:${trained.detector_set.id}`, {
              version: trained.detector_set.version,
              joined: membership.joined.length,
              left: membership.left.length,
              acknowledged_warnings: blockingWarnings(plan).map((w) => w.kind),
            }),
          );
          this.changed('models');
          let rescans: RescanOutcome = { rescanned: 0, not_rescanned: [], changed: [] };
          if (req.rescan) {
            const open = (
              store.db
                .prepare(
                  `SELECT i.sha256 FROM (${Q.LATEST_VERDICTS_SQL}) l JOIN items i ON i.id = l.item_id LEFT JOIN triage t ON t.item_id = l.item_id
                    WHERE l.decision IN ('review','block') AND COALESCE(t.state,'new') <> 'closed'`,
                )
                .all() as { sha256: string }[]
            ).map((r) => r.sha256);
            const relabelled = [...plan.joining, ...plan.leaving].map((j) => j.sha256);
            rescans = await this.rescan([...relabelled, ...open], baseline, ctx, 0.8, 1);
            this.changed('queue');
            this.changed('items', rescans.changed.map((c) => c.sha256).slice(0, 500));
          }
          const result: RetrainResult = {
            detector_set: trained.detector_set,
            joined: membership.joined.length,
            left: membership.left.length,
            seconds: trained.seconds,
            ...rescans,
          };
          return result;
        });
        return { job };
      },

      activate: async (req) => {
        const { row, previous } = this.models.activate(req.id, this.who(req.analyst));
        const name = (store.db.prepare('SELECT name FROM baselines WHERE id = ?').get(row.baseline_id) as { name: string }).name;
        this.changed('models');
        return { active: await this.models.summary(row, name, this.models.maliciousIds()), previous_id: previous };
      },

      rollback: async (req) => {
        const baseline = req.baseline ?? DEFAULT_BASELINE;
        const { row, previous } = this.models.rollback(baseline, this.who(req.analyst));
        this.changed('models');
        return { active: await this.models.summary(row, baseline, this.models.maliciousIds()), previous_id: previous };
      },

      compare: async (req) => this.models.compare(req),

      exportBundle: async (req) => {
        let id = req.detector_set_id;
        if (id === undefined) {
          const b = store.findBaseline(DEFAULT_BASELINE);
          id = b ? store.activeDetectorSet(b.id)?.id : undefined;
          if (id === undefined) throw new ApiError('conflict', `baseline '${DEFAULT_BASELINE}' has no active detector set to export`);
        }
        const row = store.detectorSet(id);
        if (!row) throw new ApiError('not_found', `detector set ${id} does not exist`);
        const name = (store.db.prepare('SELECT name FROM baselines WHERE id = ?').get(row.baseline_id) as { name: string }).name;
        const stamp = new Date().toISOString().replace(/[:.]/g, '-');
        const dir = path.resolve(req.dir ?? path.join(this.engine.dataDir, 'exports', `${safeName(name)}-v${row.version}-${stamp}`));
        return exportBundle(store, { detectorSetId: id, dir, analyst: this.who(req.analyst) });
      },

      importBundle: async (req) => {
        const encoder = await this.engine.encoder();
        const res = importBundle(store, { dir: req.dir, baseline: req.baseline, activate: req.activate, localEncoderId: encoder.id, analyst: this.who(req.analyst) });
        this.changed('models');
        this.changed('baselines');
        return res;
      },

      baselines: async () => {
        const cfg = this.engine.config.embedding_anomaly_detection.baseline;
        const list = store.listBaselines().map((b) => {
          const active = store.activeDetectorSet(b.id);
          const dsAge = active ? (Date.now() - Date.parse(active.created_at)) / 86_400_000 : null;
          const sample = (
            store.db.prepare('SELECT i.sha256 FROM baseline_items bi JOIN items i ON i.id = bi.item_id WHERE bi.baseline_id = ? ORDER BY bi.added_at DESC, i.id DESC LIMIT 12').all(b.id) as {
              sha256: string;
            }[]
          ).map((r) => r.sha256);
          return {
            name: b.name,
            items: b.n_items,
            created_at: b.created_at,
            updated_at: b.updated_at,
            age_days: round2((Date.now() - Date.parse(b.created_at)) / 86_400_000),
            active_version: active?.version ?? null,
            detector_set_age_days: dsAge === null ? null : round2(dsAge),
            stale: dsAge !== null && dsAge > cfg.max_age_days,
            max_age_days: cfg.max_age_days,
            min_samples: cfg.min_samples,
            sample,
          };
        });
        return { baselines: list };
      },

      baselineItems: async (req) => {
        const b = this.models.baselineOf(req.baseline);
        const total = store.baselineSize(b.id);
        const items = store.db
          .prepare(
            `SELECT i.sha256, i.first_path AS path, bi.added_at,
                    (SELECT lb.label FROM labels lb WHERE lb.item_id = i.id ORDER BY lb.id DESC LIMIT 1) AS label
               FROM baseline_items bi JOIN items i ON i.id = bi.item_id WHERE bi.baseline_id = ?
              ORDER BY bi.added_at DESC, i.id DESC LIMIT ? OFFSET ?`,
          )
          .all(b.id, req.limit, req.offset) as Res<'baselineItems'>['items'];
        return { total, items };
      },

      baselineImport: async (req) => ({ job: this.jobs.submit('baseline-import', req, this.baselineImportRun(req)) }),

      scan: async (req) => ({ job: this.jobs.submit('scan', req, this.scanRun(req)) }),

      rescan: async (req) => {
        for (const sha of req.sha256s) if (!store.itemBySha(sha)) throw new ApiError('not_found', `no item with sha256 ${sha}`);
        const job = this.jobs.submit('rescan', req, async (ctx) => {
          const res = await this.rescan(req.sha256s, DEFAULT_BASELINE, ctx, 0, 1);
          this.changed('queue');
          this.changed('items', req.sha256s.slice(0, 500));
          return res;
        });
        return { job };
      },

      jobs: async (req) => ({ jobs: this.jobs.list(req) }),
      job: async (req) => this.jobs.get(req.id),
      jobCancel: async (req) => this.jobs.cancel(req.id),

      media: async (req) => {
        const m = await this.mediaBytes(req.sha256, req.variant);
        return { mime: m.mime, base64: bytesToBase64(m.bytes) };
      },
    };
  }
}

function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof CancelledError) return new ApiError('conflict', err.message);
  const message = err instanceof Error ? err.message : String(err);
  if (/does not exist|no item with|has no trained/.test(message)) return new ApiError('not_found', message);
  return new ApiError('internal', message);
}

function defaultAnalyst(): string {
  try {
    return os.userInfo().username || 'analyst';
  } catch {
    return 'analyst';
  }
}

function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 60) || 'baseline';
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
