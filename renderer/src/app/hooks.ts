// Data hooks: load through the API, refetch when the backend says that kind of thing changed.
import { useCallback, useEffect, useRef, useState } from 'react';
import type { ApiEvent } from '../../../shared/api/contract.js';
import type { Job } from '../../../shared/api/schemas.js';
import { useApi } from './context.js';

export type Changed = Extract<ApiEvent, { type: 'changed' }>['what'];

export interface Query<T> {
  data: T | undefined;
  error: string | null;
  loading: boolean;
  reload(): void;
}

export function useQuery<T>(load: () => Promise<T>, deps: unknown[], refetchOn: Changed[] = []): Query<T> {
  const api = useApi();
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const seq = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const reload = useCallback(() => {
    const mine = ++seq.current;
    setLoading(true);
    loadRef.current().then(
      (d) => {
        if (mine !== seq.current) return;
        setData(d);
        setError(null);
        setLoading(false);
      },
      (err: unknown) => {
        if (mine !== seq.current) return;
        setError(err instanceof Error ? err.message : String(err));
        setLoading(false);
      },
    );
  }, []);
  // eslint-disable-next-line react-hooks/exhaustive-deps
  useEffect(reload, deps);
  const kinds = refetchOn.join(',');
  useEffect(() => {
    if (!kinds) return;
    const wanted = new Set(kinds.split(','));
    let timer: number | undefined;
    const off = api.subscribe((e) => {
      if (e.type !== 'changed' || !wanted.has(e.what)) return;
      // Bursts of changes (a bulk label) become one refetch.
      window.clearTimeout(timer);
      timer = window.setTimeout(reload, 120);
    });
    return () => {
      off();
      window.clearTimeout(timer);
    };
  }, [api, kinds, reload]);
  return { data, error, loading, reload };
}

/** Every job the backend reports, newest first, kept up to date from events. */
export function useJobs(): Job[] {
  const api = useApi();
  const [jobs, setJobs] = useState<Map<number, Job>>(new Map());
  useEffect(() => {
    let alive = true;
    api.jobs({ limit: 20 }).then(
      (r) => alive && setJobs((prev) => new Map([...r.jobs.map((j) => [j.id, j] as const), ...prev])),
      () => undefined,
    );
    const off = api.subscribe((e) => {
      if (e.type === 'job') setJobs((prev) => new Map(prev).set(e.job.id, e.job));
    });
    return () => {
      alive = false;
      off();
    };
  }, [api]);
  return [...jobs.values()].sort((a, b) => b.id - a.id);
}

/** Resolves when a job ends (from events; polls as a fallback). */
export function useJobWatcher(): (job: Job) => Promise<Job> {
  const api = useApi();
  return useCallback(
    (job: Job) =>
      new Promise<Job>((resolve) => {
        const done = (j: Job) => ['done', 'failed', 'cancelled'].includes(j.state);
        let finished = false;
        const finish = (j: Job) => {
          if (finished) return;
          finished = true;
          off();
          window.clearInterval(poll);
          resolve(j);
        };
        const off = api.subscribe((e) => {
          if (e.type === 'job' && e.job.id === job.id && done(e.job)) void api.job({ id: job.id }).then(finish, () => finish(e.job));
        });
        const poll = window.setInterval(() => {
          void api.job({ id: job.id }).then((j) => done(j) && finish(j), () => undefined);
        }, 2000);
      }),
    [api],
  );
}

/** Keyboard shortcuts, ignored while typing in a field (Escape still reaches the handler). */
export function useKeys(handler: (e: KeyboardEvent) => void, deps: unknown[]): void {
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
      const t = e.target as HTMLElement | null;
      const typing = !!t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable);
      if (typing && e.key !== 'Escape') return;
      if (document.querySelector('[role="dialog"]') && !(t?.closest('[role="dialog"]'))) return;
      ref.current(e);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
}
