// Long work (baseline import, scans, retraining, previews) runs as jobs: persisted in the
// `jobs` table so their state survives a restart, reported as progress events, cancellable
// through an AbortSignal. Jobs run one at a time, in order: a retrain must not read a
// baseline that an import is still filling, and two trainings must not race for a version.
import type Database from 'better-sqlite3';
import type { Job } from '../../../shared/api/schemas.js';
import { ApiError } from '../../../shared/api/contract.js';
import type { EventBus } from './events.js';

export interface JobContext {
  readonly id: number;
  readonly signal: AbortSignal;
  /** fraction in [0, 1]; detail says what is happening, in words. */
  progress(fraction: number, detail?: string): void;
}

export type JobRun = (ctx: JobContext) => Promise<unknown>;

interface JobRow {
  id: number;
  kind: string;
  state: Job['state'];
  progress: number;
  detail: string | null;
  params: string;
  result: string | null;
  error: string | null;
  created_at: string;
  updated_at: string;
}

interface Pending {
  id: number;
  run: JobRun;
  controller: AbortController;
}

/** Jobs whose work can simply be run again after an interruption (they are idempotent). */
export type Resumer = (params: unknown) => JobRun | null;

const PROGRESS_INTERVAL_MS = 200;

export class JobManager {
  private readonly queue: Pending[] = [];
  private running: Pending | null = null;
  private drainWaiters: (() => void)[] = [];
  private closed = false;

  constructor(
    private readonly db: Database.Database,
    private readonly events: EventBus,
  ) {}

  /**
   * Jobs left 'queued' or 'running' by a server that stopped: resumable kinds are queued
   * again (with a note), the others are marked failed with the reason.
   */
  recoverInterrupted(resumers: Record<string, Resumer>): number {
    const stale = this.db.prepare(`SELECT * FROM jobs WHERE state IN ('queued','running') ORDER BY id`).all() as JobRow[];
    let resumed = 0;
    for (const row of stale) {
      const resume = resumers[row.kind]?.(JSON.parse(row.params));
      if (resume) {
        this.update(row.id, { state: 'queued', detail: 'resumed after the server restarted' });
        this.enqueue({ id: row.id, run: resume, controller: new AbortController() });
        resumed++;
      } else {
        this.update(row.id, { state: 'failed', error: `interrupted: the server stopped while this ${row.kind} job ran; start it again` });
      }
    }
    return resumed;
  }

  submit(kind: string, params: unknown, run: JobRun): Job {
    if (this.closed) throw new ApiError('unavailable', 'the server is shutting down; no new jobs');
    const now = new Date().toISOString();
    const info = this.db
      .prepare(`INSERT INTO jobs (kind, state, progress, detail, params, created_at, updated_at) VALUES (?, 'queued', 0, ?, ?, ?, ?)`)
      .run(kind, this.running || this.queue.length ? 'waiting for the job before it' : null, JSON.stringify(params ?? {}), now, now);
    const id = Number(info.lastInsertRowid);
    this.enqueue({ id, run, controller: new AbortController() });
    const job = this.get(id);
    this.events.emit({ type: 'job', job });
    return job;
  }

  get(id: number): Job {
    const row = this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow | undefined;
    if (!row) throw new ApiError('not_found', `job ${id} does not exist`);
    return toJob(row);
  }

  list(opts: { kind?: string; active?: boolean; limit: number }): Job[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (opts.kind) {
      where.push('kind = ?');
      args.push(opts.kind);
    }
    if (opts.active !== undefined) where.push(opts.active ? `state IN ('queued','running')` : `state NOT IN ('queued','running')`);
    const sql = `SELECT * FROM jobs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
    return (this.db.prepare(sql).all(...args, opts.limit) as JobRow[]).map(toJob);
  }

  cancel(id: number): Job {
    const job = this.get(id);
    if (job.state === 'done' || job.state === 'failed' || job.state === 'cancelled') return job;
    const queued = this.queue.findIndex((p) => p.id === id);
    if (queued >= 0) {
      this.queue.splice(queued, 1);
      this.finish(id, { state: 'cancelled', detail: 'cancelled before it started' });
      return this.get(id);
    }
    if (this.running?.id === id) {
      this.running.controller.abort(new Error(`job ${id} (${job.kind}) was cancelled`));
      this.update(id, { detail: 'cancelling…' });
    }
    return this.get(id);
  }

  /** Resolves when no job is queued or running (tests, shutdown). */
  idle(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Cancels what runs, drops what waits (marked failed so a restart can resume it), and waits. */
  async shutdown(): Promise<void> {
    this.closed = true;
    this.queue.splice(0, this.queue.length);
    this.running?.controller.abort(new Error('the server is shutting down'));
    await this.idle();
  }

  private enqueue(p: Pending): void {
    this.queue.push(p);
    queueMicrotask(() => void this.pump());
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    const next = this.queue.shift();
    if (!next) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
      return;
    }
    this.running = next;
    this.update(next.id, { state: 'running', progress: 0, detail: 'started' });
    let lastWrite = 0;
    let lastFraction = 0;
    const ctx: JobContext = {
      id: next.id,
      signal: next.controller.signal,
      progress: (fraction, detail) => {
        const now = performance.now();
        lastFraction = Math.max(0, Math.min(1, Number.isFinite(fraction) ? fraction : lastFraction));
        // Progress is written and broadcast a few times a second, not per item.
        if (now - lastWrite < PROGRESS_INTERVAL_MS) return;
        lastWrite = now;
        this.update(next.id, { progress: lastFraction, detail: detail ?? null });
      },
    };
    try {
      const result = await next.run(ctx);
      if (next.controller.signal.aborted) throw next.controller.signal.reason;
      this.finish(next.id, { state: 'done', progress: 1, detail: 'done', result: result ?? null });
    } catch (err) {
      if (next.controller.signal.aborted) {
        const reason = next.controller.signal.reason instanceof Error ? next.controller.signal.reason.message : 'cancelled';
        const shuttingDown = this.closed;
        this.finish(next.id, shuttingDown
          ? { state: 'failed', error: `interrupted: ${reason}` }
          : { state: 'cancelled', detail: reason });
      } else {
        this.finish(next.id, { state: 'failed', error: err instanceof Error ? err.message : String(err) });
      }
    } finally {
      this.running = null;
      void this.pump();
    }
  }

  private finish(id: number, patch: Partial<Omit<JobRow, 'result'>> & { result?: unknown }): void {
    this.update(id, patch);
  }

  private update(id: number, patch: Partial<Omit<JobRow, 'result'>> & { result?: unknown }): void {
    const sets: string[] = ['updated_at = ?'];
    const args: unknown[] = [new Date().toISOString()];
    for (const key of ['state', 'progress', 'detail', 'error'] as const) {
      if (patch[key] !== undefined) {
        sets.push(`${key} = ?`);
        args.push(patch[key]);
      }
    }
    if (patch.result !== undefined) {
      sets.push('result = ?');
      args.push(JSON.stringify(patch.result));
    }
    if (!this.db.open) return;
    this.db.prepare(`UPDATE jobs SET ${sets.join(', ')} WHERE id = ?`).run(...args, id);
    this.events.emit({ type: 'job', job: this.get(id) });
  }
}

function toJob(row: JobRow): Job {
  return {
    id: row.id,
    kind: row.kind,
    state: row.state,
    progress: row.progress,
    detail: row.detail,
    params: safeJson(row.params) ?? {},
    result: row.result === null ? null : safeJson(row.result),
    error: row.error,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}
