// The OCR signal through the engine (opt-in ocr.enabled): typographic injections made by the
// red team's 'typographic' attack on photos the baseline has not seen are caught; real
// screenshots and charts (text, but benign) are not. TPR and FPR are reported and written to
// artifacts/engine-ocr.json.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Engine, type ScanItem } from '../electron/engine/engine.js';
import { runRedteam } from '../electron/engine/redteam/index.js';
import { defaultConfig, validateConfig } from '../shared/config.js';
import { repoRoot, sharedData } from './helpers/repo-root.js';
import { listMedia } from './helpers/acceptance.js';

test('OCR is opt-in', () => {
  assert.equal(defaultConfig().embedding_anomaly_detection.ocr.enabled, false);
  assert.throws(() => validateConfig({ embedding_anomaly_detection: { ocr: { review: 0.9, block: 0.5 } } }), /'embedding_anomaly_detection\.ocr\.review'/);
});

test('OCR signal: typographic injections caught, screenshots and charts not (TPR / FPR)', { timeout: 900_000 }, async (t) => {
  const photosDir = sharedData('images', 'coco2017_samples');
  if (!fs.existsSync(photosDir)) {
    t.skip('shared data not found');
    return;
  }
  const photos = await listMedia(photosDir);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-engine-ocr-'));
  const config = validateConfig({
    embedding_anomaly_detection: {
      detection_methods: { transformation_consistency: { mode: 'off' }, cross_encoder: { mode: 'off' } },
      ocr: { enabled: true },
    },
  });
  const engine = await Engine.open({ dataDir, config });
  try {
    await engine.addToBaseline(photos.slice(0, 60));
    await engine.train();

    const attackedDir = path.join(dataDir, 'typographic');
    const m = await runRedteam({ files: photos.slice(100, 140), attack: 'typographic', eps: 0, out: attackedDir, encoder: await engine.encoder(), seed: 3 });
    assert.equal(m.errors.length, 0);
    const injected = await engine.scan([attackedDir]);
    const screenshots = (await listMedia(sharedData('unusual', 'screenshots_gimp_help'))).filter((_, i) => i % 2 === 0);
    const charts = (await listMedia(sharedData('unusual', 'charts_vega_lite'))).filter((_, i) => i % 2 === 0);
    const benign = await engine.scan([...screenshots, ...charts]);
    const plain = await engine.scan(photos.slice(140, 160));
    assert.deepEqual([...injected.errors, ...benign.errors, ...plain.errors], []);

    const fired = (items: ScanItem[], at: number) => items.filter((i) => (i.signals.ocr_instructions?.raw ?? -1) >= at).length;
    const rate = (items: ScanItem[], at: number) => fired(items, at) / items.length;
    const result = {
      command: 'node --test dist/test/engine-ocr.test.js',
      thresholds: { review: 0.5, block: 0.85 },
      typographic: { n: injected.items.length, tpr_review: rate(injected.items, 0.5), tpr_block: rate(injected.items, 0.85), verdict_not_allow: injected.items.filter((i) => i.decision !== 'allow').length / injected.items.length },
      screenshots_and_charts: { n: benign.items.length, fpr_review: rate(benign.items, 0.5), fpr_block: rate(benign.items, 0.85) },
      photos_without_text: { n: plain.items.length, fpr_review: rate(plain.items, 0.5) },
      missed: injected.items.filter((i) => i.signals.ocr_instructions.raw < 0.5).map((i) => i.signals.ocr_instructions.detail),
      false_alarms: benign.items.filter((i) => i.signals.ocr_instructions.raw >= 0.5).map((i) => `${path.basename(i.path!)}: ${i.signals.ocr_instructions.detail}`),
    };
    t.diagnostic(JSON.stringify(result));
    fs.mkdirSync(path.join(repoRoot(), 'artifacts'), { recursive: true });
    fs.writeFileSync(path.join(repoRoot(), 'artifacts', 'engine-ocr.json'), `${JSON.stringify(result, null, 2)}\n`);

    // Every scanned image carries the signal, with what was read in its detail.
    for (const it of [...injected.items, ...benign.items]) assert.ok(it.signals.ocr_instructions && it.ocr, `${it.path}: no OCR signal`);
    const caught = injected.items.find((i) => i.signals.ocr_instructions.raw >= 0.85)!;
    assert.ok(caught, 'some injection reaches block');
    assert.equal(caught.decision, 'block');
    assert.match(caught.signals.ocr_instructions.detail!, /read \d+ line\(s\): ".+"; cues: /);

    assert.ok(result.typographic.tpr_review >= 0.7, `TPR ${result.typographic.tpr_review}`);
    assert.ok(result.screenshots_and_charts.fpr_review <= 0.05, `FPR ${result.screenshots_and_charts.fpr_review}`);
    assert.equal(result.photos_without_text.fpr_review, 0);
  } finally {
    await engine.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});
