// Acceptance for audio on real clips nobody tuned for, through the engine (decode by ffmpeg,
// log-mel encoder, audio detector set): a baseline from three quarters of the shared audio
// (split by sha256 of the file name, as the photo acceptance test splits photos), then a scan
// of the quarter it has not seen: at most 1% may be blocked. Perturbed copies of the held-out
// quarter (noise bursts, ultrasonic carrier, SPSA against the audio encoder) are scored with
// the same runEval as `parallax eval`, and the report is written to artifacts/.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Engine } from '../electron/engine/engine.js';
import { readAttackSet, runEval } from '../electron/engine/eval/run-eval.js';
import { walkMedia } from '../electron/engine/ingest/walk.js';
import { runAudioRedteam, type AudioAttackName } from '../electron/engine/redteam/audio.js';
import { defaultConfig } from '../shared/config.js';
import { byGroup, isHeldOut } from './helpers/acceptance.js';
import { repoRoot, sharedData } from './helpers/repo-root.js';

const audio = sharedData('audio');

test('unseen audio: block <= 1%; perturbed audio measured with runEval', { timeout: 1_200_000 }, async (t) => {
  if (!fs.existsSync(audio)) {
    t.skip(`shared data not found at ${audio}`);
    return;
  }
  const all: string[] = [];
  for await (const f of walkMedia([audio])) if (!f.error) all.push(f.path);
  const train = all.filter((f) => !isHeldOut(f));
  const heldOut = all.filter(isHeldOut);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-accept-audio-'));
  const engine = await Engine.open({ dataDir, config: defaultConfig() });
  try {
    const added = await engine.addToBaseline(train);
    assert.equal(added.errors.length, 0, JSON.stringify(added.errors));
    const trained = await engine.train();
    assert.deepEqual(trained.sets?.map((s) => s.modality), ['audio']);
    assert.match(trained.detector_set.encoder_id, /^logmel@/);

    const clean = await engine.scan(heldOut);
    assert.equal(clean.errors.length, 0, JSON.stringify(clean.errors));
    const n = clean.items.length;
    assert.ok(clean.items.every((i) => i.modality === 'audio'));
    assert.ok(clean.items.every((i) => i.tier?.not_run.squeeze && i.tier?.not_run.cross_encoder), 'image tiers marked not run');

    // Held-out clips in their own folder, the clean side of the eval.
    const cleanDir = path.join(dataDir, 'clean');
    fs.mkdirSync(cleanDir);
    for (const f of heldOut) fs.copyFileSync(f, path.join(cleanDir, `${path.basename(path.dirname(f))}__${path.basename(f)}`));
    const encoder = await engine.audio.encoder();
    const attacks: { attack: AudioAttackName; files: string[] }[] = [
      { attack: 'audio-noise', files: heldOut },
      { attack: 'audio-ultrasonic', files: heldOut },
      // SPSA costs 2 × samples × steps encoder calls per clip: a deterministic subset.
      { attack: 'audio-spsa', files: heldOut.filter((_, i) => i % 3 === 0) },
    ];
    const sets = [];
    for (const a of attacks) {
      const out = path.join(dataDir, a.attack);
      const m = await runAudioRedteam({ files: a.files, attack: a.attack, out, encoder, eps: 0.01, seed: 1 });
      assert.equal(m.errors.length, 0, JSON.stringify(m.errors));
      sets.push(readAttackSet(out));
    }
    const report = await runEval(engine, { clean: cleanDir, attacked: sets });
    const rates = (d: 'block' | 'review') => clean.summary[d] / n;
    const result = {
      command: 'node --test dist/test/acceptance-audio.test.js',
      baseline: added.total,
      encoder: trained.detector_set.encoder_id,
      unseen_audio: { n, block_rate: rates('block'), review_rate: rates('review'), summary: clean.summary, by_group: byGroup(clean.items) },
      perturbed: Object.fromEntries(
        Object.entries(report.sets).map(([k, v]) => [k, { n: v.n, auroc: v.fused.auroc, tpr_at_1pct_fpr: v.fused.tpr_at_1pct_fpr, block_rate: v.fused.block_rate, review_rate: v.fused.review_rate }]),
      ),
      eval_clean: report.clean,
    };
    t.diagnostic(JSON.stringify(result));
    const artifacts = path.join(repoRoot(), 'artifacts');
    fs.mkdirSync(artifacts, { recursive: true });
    fs.writeFileSync(path.join(artifacts, 'acceptance-audio.json'), `${JSON.stringify(result, null, 2)}\n`);

    assert.ok(n >= 60, `held-out set too small: ${n}`);
    assert.ok(rates('block') <= 0.01, `block rate ${rates('block')} on unseen audio`);
    // The embedding cannot hear a 19 kHz carrier (16 kHz decode); the ultrasonic check must.
    assert.ok(report.sets['audio-ultrasonic'].fused.block_rate >= 0.9, `ultrasonic carriers blocked: ${report.sets['audio-ultrasonic'].fused.block_rate}`);
    // Noise bursts move the log-mel statistics: ranked above clean clips more often than not.
    assert.ok(report.sets['audio-noise'].fused.auroc > 0.6, `noise-burst AUROC ${report.sets['audio-noise'].fused.auroc}`);
  } finally {
    await engine.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});
