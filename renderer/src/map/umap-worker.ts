// UMAP off the page's thread: fitted, seeded, on the baseline sample only; every other point
// (the rest of the baseline, scanned items) is placed with `transform`, so a point's position
// depends on the baseline and not on what else arrived that day.
import { UMAP } from 'umap-js';
import { mulberry32 } from '../../../shared/math/rng.js';
import type { FromWorker, UmapJob } from './protocol.js';

interface WorkerScope {
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent<UmapJob>) => void) | null;
}
const scope = self as unknown as WorkerScope;

function rows(v: Float32Array, from: number, to: number, dims: number): number[][] {
  const out: number[][] = [];
  for (let i = from; i < to; i++) out.push(Array.from(v.subarray(i * dims, (i + 1) * dims)));
  return out;
}

async function run(job: UmapJob): Promise<void> {
  const started = performance.now();
  const { n, dims, nFit } = job;
  const umap = new UMAP({ nComponents: 2, nNeighbors: Math.max(2, Math.min(job.nNeighbors, nFit - 1)), minDist: 0.1, random: mulberry32(job.seed) });
  const fitRows = rows(job.vectors, 0, nFit, dims);
  const epochs = umap.initializeFit(fitRows);
  for (let e = 0; e < epochs; e++) {
    umap.step();
    if (e % 10 === 0) scope.postMessage({ type: 'progress', stage: 'fit', done: e, total: epochs });
  }
  const coords = new Float32Array(n * 2);
  const fitted = umap.getEmbedding();
  for (let i = 0; i < nFit; i++) {
    coords[i * 2] = fitted[i][0];
    coords[i * 2 + 1] = fitted[i][1];
  }
  const chunk = 500;
  for (let from = nFit; from < n; from += chunk) {
    const to = Math.min(n, from + chunk);
    const placed = umap.transform(rows(job.vectors, from, to, dims));
    for (let i = from; i < to; i++) {
      coords[i * 2] = placed[i - from][0];
      coords[i * 2 + 1] = placed[i - from][1];
    }
    scope.postMessage({ type: 'progress', stage: 'transform', done: to - nFit, total: n - nFit });
  }
  scope.postMessage({ type: 'done', coords, ms: performance.now() - started }, [coords.buffer]);
}

scope.onmessage = (e) => {
  if (e.data?.type !== 'run') return;
  run(e.data).catch((err: unknown) => scope.postMessage({ type: 'error', message: err instanceof Error ? err.message : String(err) }));
};
