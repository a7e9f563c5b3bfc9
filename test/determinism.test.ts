// A detector set must be a function of the baseline's content and the configuration: the
// same items, added in any order, give the same verdicts. (Item ids follow the order in
// which concurrent decodes finish, so nothing may depend on them.)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Engine } from '../electron/engine/engine.js';
import { defaultConfig } from '../shared/config.js';
import { repoRoot } from './helpers/repo-root.js';

test('training is reproducible whatever order the baseline items arrived in', { timeout: 300_000 }, async () => {
  const demo = path.join(repoRoot(), 'models', 'demo');
  const files = fs.readdirSync(path.join(demo, 'baseline')).sort().map((f) => path.join(demo, 'baseline', f));
  const risks: number[][] = [];
  for (const order of [files, [...files].reverse()]) {
    const engine = await Engine.open({ dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-det-')), config: defaultConfig() });
    try {
      for (const f of order) await engine.addToBaseline([f]);
      await engine.train();
      const report = await engine.scan([path.join(demo, 'holdout')]);
      risks.push(report.items.map((i) => i.risk));
    } finally {
      await engine.close();
    }
  }
  assert.equal(risks[0].length, 5);
  assert.deepEqual(risks[1], risks[0]);
});
