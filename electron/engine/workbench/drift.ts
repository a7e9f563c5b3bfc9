// Drift: is what arrives lately still drawn from the baseline's distribution?
//
// Per time window (items by the time they were first scanned):
//   - centroid shift: cosine distance between the window's mean embedding and the baseline's,
//     shown against the 95th percentile of the same shift for random baseline subsamples of
//     the window's size (small windows wobble on their own);
//   - MMD² (unbiased, Gaussian kernel, median-heuristic bandwidth on the baseline) with a
//     permutation p-value: the alert fires when p < alpha;
//   - the share of review and block decisions, which alerts above its own threshold.
// Per cluster (seeded k-means on the baseline): how the recent items spread over the
// baseline's clusters, and how many fall outside all of them.
import type { ParsedReq, Res } from '../../../shared/api/contract.js';
import { gemmNT } from '../../../shared/math/matrix.js';
import { mulberry32 } from '../../../shared/math/rng.js';
import type { Rng } from '../../../shared/types.js';
import type { Store } from '../store/store.js';
import { blobToVector } from '../store/store.js';
import { Ticker } from './cooperative.js';

const BASELINE_SAMPLE = 200;
const SEED = 20240601;

interface Recent {
  itemId: number;
  sha256: string;
  at: number;
  decision: 'allow' | 'review' | 'block';
}

export async function computeDrift(
  store: Store,
  req: ParsedReq<'drift'>,
  baseline: string,
  encoderId: string | null,
  signal?: AbortSignal,
): Promise<Res<'drift'>> {
  const db = store.db;
  const ticker = new Ticker(10);
  const now = Date.now();
  const dayMs = 86_400_000;
  const windowMs = req.window === 'week' ? 7 * dayMs : dayMs;
  const since = startOfUtcDay(now - (req.days - 1) * dayMs);
  const sinceIso = new Date(since).toISOString();
  const method =
    'Windows hold items by when they were first scanned. Centroid shift = cosine distance of mean embeddings, ' +
    'null95 = 95th percentile of the shift for baseline subsamples of the same size. MMD² is unbiased with a Gaussian kernel ' +
    `(median-heuristic bandwidth), its p-value from ${req.permutations} label permutations against ${BASELINE_SAMPLE} baseline items. ` +
    `A window alerts when p < ${req.alpha} or when review + block reach ${Math.round(req.flag_share_alert * 100)}% of its items. ` +
    'Clusters: seeded k-means on the baseline; "outside" counts items farther from every centroid than 99% of baseline items.';

  const daily = (
    db
      .prepare(
        `SELECT substr(created_at, 1, 10) AS day,
                SUM(decision = 'allow') AS allow, SUM(decision = 'review') AS review, SUM(decision = 'block') AS block
           FROM verdicts WHERE created_at >= ? AND source <> 'rescan' GROUP BY day ORDER BY day`,
      )
      .all(sinceIso) as { day: string; allow: number; review: number; block: number }[]
  ).map((r) => ({ day: r.day, allow: r.allow ?? 0, review: r.review ?? 0, block: r.block ?? 0 }));

  const b = store.findBaseline(baseline);
  const empty: Res<'drift'> = {
    baseline,
    baseline_n: 0,
    encoder_id: encoderId,
    windows: [],
    daily,
    clusters: [],
    alert: { raised: false, reasons: [] },
    method,
  };
  if (!b || !encoderId) return empty;

  const memberRows = db
    .prepare(
      `SELECT i.id, i.sha256, e.vector FROM baseline_items bi JOIN items i ON i.id = bi.item_id
         JOIN embeddings e ON e.item_id = i.id AND e.encoder_id = ? WHERE bi.baseline_id = ? ORDER BY i.sha256`,
    )
    .all(encoderId, b.id) as { id: number; sha256: string; vector: Buffer }[];
  if (memberRows.length < 10) return { ...empty, baseline_n: memberRows.length };
  const members = memberRows.map((r) => blobToVector(r.vector));
  const memberIds = new Set(memberRows.map((r) => r.id));
  await ticker.tick(signal);
  const dim = members[0].length;
  const baseMean = meanOf(members, dim);

  // Items by their first verdict (arrival), decision of that first verdict.
  const recent = (
    db
      .prepare(
        `SELECT v.item_id AS itemId, i.sha256, v.created_at, v.decision FROM verdicts v
           JOIN (SELECT item_id, MIN(id) AS id FROM verdicts GROUP BY item_id) f ON f.id = v.id
           JOIN items i ON i.id = v.item_id
          WHERE v.created_at >= ? ORDER BY v.id`,
      )
      .all(sinceIso) as { itemId: number; sha256: string; created_at: string; decision: Recent['decision'] }[]
  )
    .filter((r) => !memberIds.has(r.itemId))
    .map((r) => ({ itemId: r.itemId, sha256: r.sha256, at: Date.parse(r.created_at), decision: r.decision }));
  const vecStmt = db.prepare('SELECT vector FROM embeddings WHERE item_id = ? AND encoder_id = ?');
  const recentVec = new Map<number, Float32Array>();
  for (const r of recent) {
    const row = vecStmt.get(r.itemId, encoderId) as { vector: Buffer } | undefined;
    if (row) recentVec.set(r.itemId, blobToVector(row.vector));
    if (recentVec.size % 128 === 0) await ticker.tick(signal);
  }

  // Baseline sample for the kernel test, and its Gram block (shared by every window).
  const rng = mulberry32(SEED);
  const sample = pickEvenly(members, BASELINE_SAMPLE);
  const nX = sample.length;
  const X = stack(sample, dim);
  const kxxDots = new Float64Array(nX * nX);
  await blockedGram(X, X, kxxDots, nX, nX, dim, ticker, signal);
  const sq = medianSquaredDistance(kxxDots, nX);
  const gamma = 1 / (2 * Math.max(sq, 1e-12));

  const windows: Res<'drift'>['windows'] = [];
  for (let start = since; start < now; start += windowMs) {
    const end = start + windowMs;
    const inWindow = recent.filter((r) => r.at >= start && r.at < end);
    const withVec = inWindow.filter((r) => recentVec.has(r.itemId));
    const n = inWindow.length;
    const review = inWindow.filter((r) => r.decision === 'review').length;
    const block = inWindow.filter((r) => r.decision === 'block').length;
    const reasons: string[] = [];
    let centroid: number | null = null;
    let null95: number | null = null;
    let mmd2: number | null = null;
    let p: number | null = null;
    if (withVec.length >= 5) {
      const picked = pickEvenly(withVec, req.max_per_window).map((r) => recentVec.get(r.itemId)!);
      centroid = cosineDistance(meanOf(picked, dim), baseMean);
      null95 = centroidNull95(members, picked.length, baseMean, rng);
      const test = await mmdTest(X, nX, kxxDots, stack(picked, dim), picked.length, dim, gamma, req.permutations, rng, ticker, signal);
      mmd2 = test.mmd2;
      p = test.p;
      if (p < req.alpha) reasons.push(`MMD permutation p = ${p.toFixed(4)} < α = ${req.alpha} on ${picked.length} items`);
    }
    if (n >= 5 && (review + block) / n >= req.flag_share_alert) {
      reasons.push(`review + block = ${Math.round(((review + block) / n) * 100)}% of ${n} items (alert at ${Math.round(req.flag_share_alert * 100)}%)`);
    }
    windows.push({
      start: new Date(start).toISOString(),
      end: new Date(end).toISOString(),
      n,
      centroid_shift: centroid,
      centroid_shift_null95: null95,
      mmd2,
      p_value: p,
      review_share: n ? review / n : 0,
      block_share: n ? block / n : 0,
      alert: reasons.length > 0,
      reasons,
    });
    await ticker.tick(signal);
  }

  const clusters = await clusterDrift(members, memberRows.map((r) => r.sha256), recent.filter((r) => recentVec.has(r.itemId)), recentVec, dim, ticker, signal);
  const lastWithData = [...windows].reverse().find((w) => w.n > 0);
  const reasons: string[] = [];
  if (lastWithData?.alert) reasons.push(...lastWithData.reasons.map((r) => `latest window (${lastWithData.start.slice(0, 10)}): ${r}`));
  for (const c of clusters.filter((c) => c.alert)) {
    reasons.push(
      c.id < 0
        ? `${c.n_recent} recent items lie outside every baseline cluster (${Math.round(c.recent_share * 100)}% of recent items)`
        : `cluster ${c.id} holds ${Math.round(c.recent_share * 100)}% of recent items but ${Math.round(c.baseline_share * 100)}% of the baseline`,
    );
  }
  return {
    baseline,
    baseline_n: members.length,
    encoder_id: encoderId,
    windows,
    daily,
    clusters,
    alert: { raised: reasons.length > 0, reasons },
    method,
  };
}

function startOfUtcDay(t: number): number {
  const d = new Date(t);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
}

function pickEvenly<T>(list: readonly T[], max: number): T[] {
  if (list.length <= max) return [...list];
  const out: T[] = [];
  for (let i = 0; i < max; i++) out.push(list[Math.floor((i * list.length) / max)]);
  return out;
}

function stack(rows: readonly Float32Array[], dim: number): Float32Array {
  const out = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => out.set(r, i * dim));
  return out;
}

function meanOf(rows: readonly Float32Array[], dim: number): Float64Array {
  const m = new Float64Array(dim);
  for (const r of rows) for (let j = 0; j < dim; j++) m[j] += r[j];
  for (let j = 0; j < dim; j++) m[j] /= Math.max(1, rows.length);
  return m;
}

function cosineDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return aa > 0 && bb > 0 ? 1 - ab / Math.sqrt(aa * bb) : 0;
}

function centroidNull95(members: readonly Float32Array[], m: number, baseMean: Float64Array, rng: Rng): number {
  const dim = baseMean.length;
  const draws: number[] = [];
  const acc = new Float64Array(dim);
  for (let t = 0; t < 100; t++) {
    acc.fill(0);
    for (let i = 0; i < m; i++) {
      const x = members[Math.floor(rng() * members.length)];
      for (let j = 0; j < dim; j++) acc[j] += x[j];
    }
    draws.push(cosineDistance(acc, baseMean));
  }
  draws.sort((a, b) => a - b);
  return draws[Math.floor(0.95 * (draws.length - 1))];
}

async function blockedGram(
  a: Float32Array, b: Float32Array, out: Float64Array, m: number, n: number, dim: number, ticker: Ticker, signal?: AbortSignal,
): Promise<void> {
  const block = 32;
  for (let i0 = 0; i0 < m; i0 += block) {
    gemmNT(a, b, out, Math.min(block, m - i0), n, dim, i0 * dim, 0, i0 * n);
    await ticker.tick(signal);
  }
}

/** Median of squared distances between distinct baseline items (vectors are unit length). */
function medianSquaredDistance(dots: Float64Array, n: number): number {
  const d: number[] = [];
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) d.push(Math.max(0, dots[i * n + i] + dots[j * n + j] - 2 * dots[i * n + j]));
  d.sort((x, y) => x - y);
  return d.length ? d[Math.floor(d.length / 2)] : 1;
}

async function mmdTest(
  X: Float32Array, nX: number, kxxDots: Float64Array,
  Y: Float32Array, nY: number, dim: number, gamma: number,
  permutations: number, rng: Rng, ticker: Ticker, signal?: AbortSignal,
): Promise<{ mmd2: number; p: number }> {
  const N = nX + nY;
  const dotsXY = new Float64Array(nY * nX);
  const dotsYY = new Float64Array(nY * nY);
  await blockedGram(Y, X, dotsXY, nY, nX, dim, ticker, signal);
  await blockedGram(Y, Y, dotsYY, nY, nY, dim, ticker, signal);
  const norm = new Float64Array(N);
  for (let i = 0; i < nX; i++) norm[i] = kxxDots[i * nX + i];
  for (let i = 0; i < nY; i++) norm[nX + i] = dotsYY[i * nY + i];
  // Pooled kernel matrix K over Z = [X; Y].
  const K = new Float64Array(N * N);
  const dot = (i: number, j: number): number => {
    if (i < nX && j < nX) return kxxDots[i * nX + j];
    if (i >= nX && j >= nX) return dotsYY[(i - nX) * nY + (j - nX)];
    return i >= nX ? dotsXY[(i - nX) * nX + j] : dotsXY[(j - nX) * nX + i];
  };
  for (let i = 0; i < N; i++) {
    for (let j = i; j < N; j++) {
      const k = Math.exp(-gamma * Math.max(0, norm[i] + norm[j] - 2 * dot(i, j)));
      K[i * N + j] = k;
      K[j * N + i] = k;
    }
    if (i % 64 === 0) await ticker.tick(signal);
  }
  const groupOf = new Uint8Array(N);
  for (let i = nX; i < N; i++) groupOf[i] = 1;
  const stat = (g: Uint8Array): number => {
    let sxx = 0, syy = 0, sxy = 0;
    for (let i = 0; i < N; i++) {
      const gi = g[i];
      const row = i * N;
      for (let j = i + 1; j < N; j++) {
        const k = K[row + j];
        if (gi !== g[j]) sxy += k;
        else if (gi === 0) sxx += k;
        else syy += k;
      }
    }
    return (2 * sxx) / (nX * (nX - 1)) + (2 * syy) / (nY * (nY - 1)) - (2 * sxy) / (nX * nY);
  };
  const observed = stat(groupOf);
  let atLeast = 0;
  const perm = new Uint8Array(groupOf);
  for (let t = 0; t < permutations; t++) {
    for (let i = N - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      const tmp = perm[i];
      perm[i] = perm[j];
      perm[j] = tmp;
    }
    if (stat(perm) >= observed) atLeast++;
    await ticker.tick(signal);
  }
  return { mmd2: observed, p: (1 + atLeast) / (1 + permutations) };
}

async function clusterDrift(
  members: readonly Float32Array[],
  memberSha: readonly string[],
  recent: readonly Recent[],
  recentVec: Map<number, Float32Array>,
  dim: number,
  ticker: Ticker,
  signal?: AbortSignal,
): Promise<Res<'drift'>['clusters']> {
  const k = Math.max(2, Math.min(8, Math.floor(members.length / 10)));
  const rng = mulberry32(SEED + 1);
  // Samples bound the work on large baselines (k-means is the costly part).
  const centroids = kmeans(pickEvenly(members, 1000), k, dim, rng);
  await ticker.tick(signal);
  const counted = pickEvenly(members.map((x, i) => ({ x, sha: memberSha[i] })), 2000);
  const assign = (x: Float32Array): { c: number; d: number } => {
    let best = 0, bestD = Infinity;
    for (let c = 0; c < k; c++) {
      const d = sqDist(x, centroids[c]);
      if (d < bestD) { bestD = d; best = c; }
    }
    return { c: best, d: bestD };
  };
  const baseCounts = new Array<number>(k).fill(0);
  const baseDists: number[] = [];
  const baseExample = new Array<string | null>(k).fill(null);
  const baseExampleD = new Array<number>(k).fill(Infinity);
  for (let i = 0; i < counted.length; i++) {
    const a = assign(counted[i].x);
    baseCounts[a.c]++;
    baseDists.push(a.d);
    if (a.d < baseExampleD[a.c]) { baseExampleD[a.c] = a.d; baseExample[a.c] = counted[i].sha; }
    if (i % 256 === 0) await ticker.tick(signal);
  }
  baseDists.sort((a, b) => a - b);
  const outsideCut = baseDists[Math.floor(0.99 * (baseDists.length - 1))];
  const recentCounts = new Array<number>(k + 1).fill(0);
  const recentSums = Array.from({ length: k }, () => new Float64Array(dim));
  const recentExample = new Array<string | null>(k + 1).fill(null);
  const recentExampleD = new Array<number>(k + 1).fill(Infinity);
  for (const r of recent) {
    await ticker.tick(signal);
    const x = recentVec.get(r.itemId)!;
    const a = assign(x);
    const slot = a.d > outsideCut ? k : a.c;
    recentCounts[slot]++;
    if (slot < k) for (let j = 0; j < dim; j++) recentSums[slot][j] += x[j];
    // For "outside", the most extreme item is the telling example; inside, the most typical.
    const score = slot === k ? -a.d : a.d;
    if (score < recentExampleD[slot]) { recentExampleD[slot] = score; recentExample[slot] = r.sha256; }
  }
  const m = recent.length;
  const out: Res<'drift'>['clusters'] = [];
  for (let c = 0; c <= k; c++) {
    const p0 = c < k ? baseCounts[c] / counted.length : 0.01;
    const share = m ? recentCounts[c] / m : 0;
    const z = m ? (share - p0) / Math.sqrt(Math.max(p0 * (1 - p0), 1e-6) / m) : 0;
    out.push({
      id: c < k ? c : -1,
      baseline_share: Math.min(1, p0),
      recent_share: share,
      n_recent: recentCounts[c],
      centroid_shift: c < k && recentCounts[c] > 0 ? cosineDistance(recentSums[c], centroids[c]) : null,
      alert: recentCounts[c] >= 8 && z > 3,
      example_sha256: recentExample[c] ?? (c < k ? baseExample[c] : null),
    });
  }
  return out;
}

function sqDist(a: Float32Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    s += d * d;
  }
  return s;
}

/** k-means++ seeding and 15 Lloyd iterations; deterministic for a given rng. */
function kmeans(X: readonly Float32Array[], k: number, dim: number, rng: Rng): Float64Array[] {
  const centroids: Float64Array[] = [Float64Array.from(X[Math.floor(rng() * X.length)])];
  const d2 = X.map((x) => sqDist(x, centroids[0]));
  while (centroids.length < k) {
    const total = d2.reduce((a, b) => a + b, 0);
    let r = rng() * total;
    let pick = 0;
    for (; pick < X.length - 1; pick++) {
      r -= d2[pick];
      if (r <= 0) break;
    }
    const c = Float64Array.from(X[pick]);
    centroids.push(c);
    X.forEach((x, i) => (d2[i] = Math.min(d2[i], sqDist(x, c))));
  }
  const assignOf = new Int32Array(X.length);
  for (let iter = 0; iter < 15; iter++) {
    X.forEach((x, i) => {
      let best = 0, bestD = Infinity;
      for (let c = 0; c < k; c++) {
        const d = sqDist(x, centroids[c]);
        if (d < bestD) { bestD = d; best = c; }
      }
      assignOf[i] = best;
    });
    const sums = Array.from({ length: k }, () => new Float64Array(dim));
    const counts = new Array<number>(k).fill(0);
    X.forEach((x, i) => {
      counts[assignOf[i]]++;
      const s = sums[assignOf[i]];
      for (let j = 0; j < dim; j++) s[j] += x[j];
    });
    for (let c = 0; c < k; c++) {
      if (counts[c] === 0) continue;
      for (let j = 0; j < dim; j++) centroids[c][j] = sums[c][j] / counts[c];
    }
  }
  return centroids;
}
