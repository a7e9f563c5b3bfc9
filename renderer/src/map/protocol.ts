// Page ↔ UMAP worker messages.

export interface UmapJob {
  type: 'run';
  /** n × dims, row-major; the first nFit rows are the fit sample. */
  vectors: Float32Array;
  n: number;
  dims: number;
  nFit: number;
  seed: number;
  nNeighbors: number;
}

export type FromWorker =
  | { type: 'progress'; stage: 'fit' | 'transform'; done: number; total: number }
  /** n × 2 coordinates in the input order. */
  | { type: 'done'; coords: Float32Array; ms: number }
  | { type: 'error'; message: string };
