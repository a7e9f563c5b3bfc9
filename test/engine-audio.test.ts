// Audio through the engine: routing by sniffed bytes, one detector set per modality, audio
// verdicts (with the image-only tiers marked not run), config keys, and errors naming the file.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { Engine, type ItemError, type ScanItem } from '../electron/engine/engine.js';
import { MediaLibrary } from '../electron/engine/workbench/media.js';
import { pcm16Wav, ultrasonicCarrier } from '../electron/engine/redteam/audio.js';
import { ConfigError, defaultConfig, parseConfig, validateConfig, type ParallaxConfig } from '../shared/config.js';
import { sharedData } from './helpers/repo-root.js';
import { listMedia } from './helpers/acceptance.js';

const audioDir = sharedData('audio');
const photos = sharedData('images');

function fastConfig(audio: Record<string, unknown> = {}): ParallaxConfig {
  return validateConfig({
    embedding_anomaly_detection: {
      detection_methods: { transformation_consistency: { mode: 'off' }, cross_encoder: { mode: 'off' } },
      audio,
    },
  });
}

test('audio config keys are validated and errors name the key', () => {
  assert.equal(defaultConfig().embedding_anomaly_detection.audio.encoder, 'logmel');
  assert.throws(() => parseConfig('embedding_anomaly_detection:\n  audio:\n    encoder: clap\n', 'c.yaml'), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /'embedding_anomaly_detection\.audio\.clap_model_dir': required/);
    return true;
  });
  assert.throws(() => parseConfig('embedding_anomaly_detection:\n  audio:\n    sample_rate: 22050\n'), /'embedding_anomaly_detection\.audio\.sample_rate': the logmel encoder works at 16000 Hz/);
  assert.throws(() => parseConfig('embedding_anomaly_detection:\n  audio:\n    max_seconds: -1\n'), /'embedding_anomaly_detection\.audio\.max_seconds'/);
  assert.throws(() => parseConfig('embedding_anomaly_detection:\n  audio:\n    encoderr: logmel\n'), /unknown key 'embedding_anomaly_detection\.audio\.encoderr'/);
  assert.throws(() => parseConfig('embedding_anomaly_detection:\n  audio:\n    enabled: maybe\n'), /'embedding_anomaly_detection\.audio\.enabled'/);
});

test('a baseline with photos and audio trains one detector set per modality; scans route by bytes', { timeout: 600_000 }, async (t) => {
  if (!fs.existsSync(audioDir) || !fs.existsSync(photos)) {
    t.skip('shared data not found');
    return;
  }
  const images = await listMedia(path.join(photos, 'coco2017_samples'));
  const clips = await listMedia(path.join(audioDir, 'speech_fsdd_digits'));
  const baselineClips = clips.slice(0, 80);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-engine-audio-'));
  const engine = await Engine.open({ dataDir, config: fastConfig({ max_seconds: 5 }) });
  try {
    const added = await engine.addToBaseline([...images.slice(0, 60), ...baselineClips]);
    assert.equal(added.errors.length, 0, JSON.stringify(added.errors));
    assert.equal(added.total, 140);
    const trained = await engine.train();
    const sets = Object.fromEntries((trained.sets ?? []).map((s) => [s.modality, s.detector_set]));
    assert.deepEqual(Object.keys(sets).sort(), ['audio', 'image']);
    assert.equal(sets.image.n_items, 60);
    assert.equal(sets.audio.n_items, 80);
    assert.match(sets.audio.encoder_id, /^logmel@/);
    assert.match(sets.image.encoder_id, /^mobilenet_v2@/);
    assert.notEqual(sets.image.id, sets.audio.id);

    // A WAV renamed .png is still audio: the type comes from the bytes.
    const disguised = path.join(dataDir, 'clip.png');
    fs.copyFileSync(clips[85], disguised);
    const report = await engine.scan([images[62], disguised, clips[86]]);
    assert.equal(report.errors.length, 0, JSON.stringify(report.errors));
    assert.deepEqual(report.items.map((i) => i.modality), ['image', 'audio', 'audio']);
    const audioItem = report.items[1];
    assert.ok(['allow', 'review', 'block'].includes(audioItem.decision));
    for (const name of ['isolation_forest', 'knn', 'mahalanobis']) assert.ok(audioItem.signals[name], `audio verdict has ${name}`);
    assert.match(audioItem.tier!.not_run.squeeze!, /not applicable to audio/);
    assert.match(audioItem.tier!.not_run.cross_encoder!, /not applicable to audio/);
    assert.ok(audioItem.neighbours.every((nb) => baselineClips.includes(nb.path!)), 'audio neighbours are baseline clips');
    assert.ok(report.items[0].neighbours.every((nb) => images.includes(nb.path!)), 'image neighbours are baseline photos');

    // Retraining adds versions without deactivating the other modality's set.
    const again = await engine.train();
    assert.equal(again.sets?.length, 2);
    const b = engine.store.findBaseline('default')!;
    assert.equal(engine.store.activeDetectorSet(b.id, 'image')!.id, again.sets!.find((s) => s.modality === 'image')!.detector_set.id);
    assert.equal(engine.store.activeDetectorSet(b.id, 'audio')!.id, again.sets!.find((s) => s.modality === 'audio')!.detector_set.id);

    // In-memory audio (the MCP guard's path).
    const bytes = fs.readFileSync(clips[87]);
    const one = (await engine.scanBytes(bytes, { name: 'mcp:audio' })) as ScanItem;
    assert.equal(one.modality, 'audio', JSON.stringify(one));
    assert.equal(one.path, 'mcp:audio');

    // A near-ultrasonic carrier at 48 kHz: invisible to the 16 kHz encoder, blocked by the check.
    const host = new Float32Array(48000 * 1);
    for (let i = 0; i < host.length; i++) host[i] = 0.2 * Math.sin((2 * Math.PI * 440 * i) / 48000);
    const carrier = (await engine.scanBytes(pcm16Wav(ultrasonicCarrier(host, 48000), 48000), { name: 'carrier.wav' })) as ScanItem;
    assert.equal(carrier.decision, 'block', JSON.stringify(carrier.signals));
    assert.ok(carrier.signals.ultrasonic.raw > 0.7);
    const plain = (await engine.scanBytes(pcm16Wav(host, 48000), { name: 'plain.wav' })) as ScanItem;
    assert.ok(plain.signals.ultrasonic.raw < 0.4, `plain tone ultrasonic ${plain.signals.ultrasonic.raw}`);

    // Bad audio: each error names the file and says what is wrong.
    const truncated = path.join(dataDir, 'truncated.wav');
    fs.writeFileSync(truncated, fs.readFileSync(clips[88]).subarray(0, 30));
    const long = path.join(dataDir, 'long.wav');
    fs.writeFileSync(long, pcm16Wav(new Float32Array(16000 * 7).map((_, i) => 0.1 * Math.sin(i / 5)), 16000));
    const bad = await engine.scan([truncated, long]);
    assert.equal(bad.items.length, 0);
    const byPath = new Map(bad.errors.map((e: ItemError) => [e.path, e]));
    assert.ok(byPath.get(truncated), JSON.stringify(bad.errors));
    assert.ok(byPath.get(long), JSON.stringify(bad.errors));
    assert.match(byPath.get(long)!.reason, /long|seconds|limit/i);
    assert.match(byPath.get(truncated)!.reason, /\w/);
  } finally {
    await engine.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

test('an audio-only baseline scans audio and names images it cannot judge', { timeout: 300_000 }, async (t) => {
  if (!fs.existsSync(audioDir) || !fs.existsSync(photos)) {
    t.skip('shared data not found');
    return;
  }
  const clips = await listMedia(path.join(audioDir, 'speech_fsdd_digits'));
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-engine-audio-'));
  const engine = await Engine.open({ dataDir, config: fastConfig() });
  try {
    await engine.addToBaseline(clips.slice(0, 60));
    const trained = await engine.train();
    assert.deepEqual(trained.sets?.map((s) => s.modality), ['audio']);
    const photo = (await listMedia(path.join(photos, 'library_sample_photos')))[0];
    const report = await engine.scan([clips[70], photo]);
    assert.equal(report.items.length, 1);
    assert.equal(report.items[0].modality, 'audio');
    assert.equal(report.engine.encoder_id, trained.detector_set.encoder_id);
    assert.equal(report.errors.length, 1);
    assert.equal(report.errors[0].path, photo);
    assert.match(report.errors[0].reason, /no trained image detector set/);

    // The workbench shows an audio item as its log-mel spectrogram.
    const media = new MediaLibrary(engine.store, path.join(dataDir, 'thumbs'), engine.limits);
    const full = await media.get(report.items[0].sha256, 'full');
    assert.equal(full.mime, 'image/png');
    const meta = await sharp(full.bytes).metadata();
    assert.ok(meta.width! >= 256 && meta.height! > 100, `${meta.width}×${meta.height}`);
    const stats = await sharp(full.bytes).stats();
    assert.ok(stats.channels[0].stdev > 10, 'the spectrogram is not a flat image');
    const thumb = await media.get(report.items[0].sha256, 'thumb');
    assert.equal(thumb.mime, 'image/webp');
  } finally {
    await engine.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

test('with audio disabled, audio files are refused as not images (the image path)', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-engine-audio-'));
  const engine = await Engine.open({ dataDir, config: fastConfig({ enabled: false }) });
  try {
    const wav = path.join(dataDir, 'a.wav');
    fs.writeFileSync(wav, pcm16Wav(new Float32Array(1600), 16000));
    const r = await engine.addToBaseline([wav]);
    assert.equal(r.errors.length, 1);
    assert.equal(r.errors[0].path, wav);
    assert.match(r.errors[0].reason, /WAV|audio/i);
  } finally {
    await engine.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});
