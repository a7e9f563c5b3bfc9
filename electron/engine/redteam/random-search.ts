// Score-based random search run in lockstep over several images: every iteration proposes one
// candidate per image and scores them all in one forward call. Square Attack and the patch
// attack are sequential per image (each proposal starts from the best so far), so batching
// across images is the only way to give the encoder full batches.

import {
  resolveObjective,
  score,
  throwIfCancelled,
  type AttackResult,
  type Forward,
  type ImageSize,
  type Objective,
  type ProgressTick,
} from './pixels.js';

export interface RandomSearchSpec {
  forward: Forward;
  size: ImageSize;
  /** One per image. */
  objectives: Objective[];
  iterations: number;
  /** Writes image i's starting point into `out` (on the uint8 grid). */
  init(i: number, clean: Float32Array, out: Float32Array): void;
  /**
   * Writes image i's candidate for iteration `it` into `out`, which holds a copy of its best
   * point so far; only the changed values need writing.
   */
  propose(i: number, it: number, clean: Float32Array, out: Float32Array): void;
  signal?: AbortSignal;
  onStep?: (tick: ProgressTick) => void;
}

/** Forward passes per image: clean reference, starting point, one per iteration. */
export function randomSearchQueries(iterations: number): number {
  return 2 + iterations;
}

export async function randomSearch(cleans: Float32Array[], spec: RandomSearchSpec): Promise<AttackResult[]> {
  const n = cleans.length;
  if (spec.objectives.length !== n) throw new RangeError(`randomSearch: ${n} images but ${spec.objectives.length} objectives`);
  if (n === 0) return [];
  const per = spec.size.width * spec.size.height * 3;
  const batch = new Float32Array(n * per);
  const slot = (i: number) => batch.subarray(i * per, (i + 1) * per);

  for (let i = 0; i < n; i++) batch.set(cleans[i], i * per);
  const cleanEmbeddings = await spec.forward(batch, n);
  const objectives = spec.objectives.map((o, i) => resolveObjective(o, cleanEmbeddings[i]));
  // The clean image is feasible too: the answer is never worse than doing nothing.
  const best = cleans.map((c) => Float32Array.from(c));
  const bestScore = cleanEmbeddings.map((e, i) => score(objectives[i], e));

  const evaluate = async () => {
    const embeddings = await spec.forward(batch, n);
    for (let i = 0; i < n; i++) {
      const s = score(objectives[i], embeddings[i]);
      if (s > bestScore[i]) {
        bestScore[i] = s;
        best[i].set(slot(i));
      }
    }
  };

  for (let i = 0; i < n; i++) spec.init(i, cleans[i], slot(i));
  await evaluate();
  for (let it = 0; it < spec.iterations; it++) {
    throwIfCancelled(spec.signal);
    for (let i = 0; i < n; i++) {
      const out = slot(i);
      out.set(best[i]);
      spec.propose(i, it, cleans[i], out);
    }
    await evaluate();
    spec.onStep?.({ step: it + 1, steps: spec.iterations, score: bestScore.reduce((a, b) => a + b, 0) / n });
  }
  const queries = randomSearchQueries(spec.iterations);
  return best.map((pixels, i) => ({ pixels, queries, score: bestScore[i] }));
}

/**
 * Square Attack's schedule for the fraction p of pixels a square covers (Andriushchenko et al.
 * 2020, code of the paper), with the iteration milestones scaled from the paper's 10,000
 * iterations to the budget: p halves at 0.1%, 0.5%, 2%, 5%, 10%, 20%, 40%, 60% and 80%.
 */
export function pSchedule(pInit: number, it: number, iterations: number): number {
  const scaled = Math.floor((it / iterations) * 10_000);
  const milestones = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000];
  let p = pInit;
  for (const m of milestones) if (scaled > m) p /= 2;
  return p;
}
