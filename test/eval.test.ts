// Evaluation metrics against a hand-computed case, and the red-team folder reader.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decideAt, decisionRates, detectionMetrics, effectiveShiftThreshold, thresholdAtFpr, tprAtFpr } from '../shared/eval/metrics.js';
import { readAttackSet } from '../electron/engine/eval/run-eval.js';

test('metrics: AUROC, thresholds and TPR at 1% / 5% FPR match a hand computation', () => {
  // 20 clean scores 1..20; 5 attacked scores.
  const clean = Array.from({ length: 20 }, (_, i) => i + 1);
  const attacked = [25, 20, 19.5, 19, 5];
  // AUROC: 25 beats all 20; 20 beats 19 and ties 1 (19.5); 19.5 beats 19; 19 beats 18 and
  // ties 1 (18.5); 5 beats 4 and ties 1 (4.5). (20 + 19.5 + 19 + 18.5 + 4.5) / (5·20) = 0.815.
  // 1% FPR: m = ⌊0.2⌋ = 0 false positives allowed → τ = 20 (the largest clean score); only
  // 25 > 20 → TPR 1/5. 5% FPR: m = ⌊1⌋ = 1 → τ = 19 (2nd largest); 25, 20, 19.5 > 19 → 3/5.
  const m = detectionMetrics(attacked, clean);
  assert.equal(m.auroc, 0.815);
  assert.equal(m.threshold_1pct_fpr, 20);
  assert.equal(m.threshold_5pct_fpr, 19);
  assert.equal(m.tpr_at_1pct_fpr, 0.2);
  assert.equal(m.tpr_at_5pct_fpr, 0.6);
  assert.equal(m.n_clean, 20);
  assert.equal(m.n_attacked, 5);
  // The realised clean FPR at τ never exceeds the target.
  for (const f of [0.01, 0.05, 0.1, 0.5]) {
    const tau = thresholdAtFpr(clean, f);
    assert.ok(clean.filter((c) => c > tau).length / clean.length <= f, `FPR at ${f}`);
  }
  // Ties at the threshold count as not flagged, so the FPR stays within budget.
  assert.equal(thresholdAtFpr([1, 2, 2, 2], 0.25), 2);
  assert.equal(tprAtFpr([2, 2.1], [1, 2, 2, 2], 0.25), 0.5);
  // Every clean item may be a false positive: everything is flagged.
  assert.equal(thresholdAtFpr([1, 2], 1), -Infinity);
  assert.equal(tprAtFpr([0], [1, 2], 1), 1);
  assert.equal(detectionMetrics([3, 4], [1, 2]).auroc, 1);
  assert.equal(detectionMetrics([1, 2], [1, 2]).auroc, 0.5);
  assert.throws(() => thresholdAtFpr([], 0.01), /no clean/);
  assert.throws(() => detectionMetrics([NaN], [1]), /NaN/);
});

test('metrics: decision rates; the reference score judged at the same thresholds', () => {
  assert.deepEqual(decisionRates(['allow', 'review', 'block', 'allow']), { n: 4, block_rate: 0.25, review_rate: 0.5 });
  assert.deepEqual(decisionRates([]), { n: 0, block_rate: 0, review_rate: 0 });
  const t = { review: 0.4, block: 0.7 };
  assert.deepEqual([0.39, 0.4, 0.69, 0.7].map((s) => decideAt(s, t)), ['allow', 'review', 'review', 'block']);
});

test('metrics: the effective-attack line is the nearest-rank 95th percentile of benign shifts', () => {
  // 20 shifts 0.01..0.20: ⌈0.95·20⌉ = 19th smallest = 0.19; 40 shifts: the 38th smallest.
  const twenty = Array.from({ length: 20 }, (_, i) => (i + 1) / 100).reverse();
  assert.equal(effectiveShiftThreshold(twenty), 0.19);
  assert.equal(effectiveShiftThreshold(Array.from({ length: 40 }, (_, i) => i + 1)), 38);
  assert.equal(effectiveShiftThreshold(twenty, 1), 0.2);
  assert.equal(effectiveShiftThreshold(twenty, 0.5), 0.1);
  // Too few benign edits to draw a line from.
  assert.equal(effectiveShiftThreshold(twenty.slice(1)), null);
  assert.throws(() => effectiveShiftThreshold(twenty, 0), /q must be/);
  assert.throws(() => effectiveShiftThreshold([...twenty, NaN]), /NaN/);
});

test('attack sets: a red-team manifest gives family and files; benign families are controls; plain folders are one family', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-eval-'));
  try {
    const rt = path.join(dir, 'spsa-pgd-8');
    fs.mkdirSync(rt);
    fs.writeFileSync(path.join(rt, 'manifest.json'), JSON.stringify({
      format: 'parallax.redteam/1', attack: 'spsa-pgd', family: 'spsa-pgd', eps: 8 / 255,
      items: [{ output: '0001-a.png', source: '/x/a.jpg', embedding_shift: 0.25 }, { output: '0002-b.png', embedding_shift: 'far' }],
    }));
    const a = readAttackSet(rt);
    assert.deepEqual(
      { name: a.name, attack: a.attack, family: a.family, eps: a.eps, control: a.control, files: a.files.map((f) => path.basename(f)) },
      { name: 'spsa-pgd-8', attack: 'spsa-pgd', family: 'spsa-pgd', eps: 8 / 255, control: false, files: ['0001-a.png', '0002-b.png'] },
    );
    // Shifts by file; a value that is not a number is not a shift.
    assert.deepEqual([...a.shifts.entries()], [[path.join(rt, '0001-a.png'), 0.25]]);
    const benign = path.join(dir, 'benign-jpeg');
    fs.mkdirSync(benign);
    fs.writeFileSync(path.join(benign, 'manifest.json'), JSON.stringify({ format: 'parallax.redteam/1', attack: 'benign-jpeg', family: 'benign', eps: null, items: [] }));
    assert.equal(readAttackSet(benign).control, true);
    assert.equal(readAttackSet(benign).eps, null);
    const plain = path.join(dir, 'screenshots');
    fs.mkdirSync(plain);
    const p = readAttackSet(plain, { control: true });
    assert.deepEqual({ family: p.family, control: p.control, files: p.files }, { family: 'screenshots', control: true, files: [plain] });
    fs.writeFileSync(path.join(benign, 'manifest.json'), JSON.stringify({ format: 'other/2', items: [] }));
    assert.throws(() => readAttackSet(benign), /format is 'other\/2'/);
    assert.throws(() => readAttackSet(path.join(dir, 'missing')), /not a folder/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
