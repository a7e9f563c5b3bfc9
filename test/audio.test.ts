// Audio path: decoding every supported format through the bundled ffmpeg (with its failure
// modes and process hygiene), the log-mel encoder's contract, the near-ultrasonic check, and
// the detectors trained on log-mel embeddings of the shared clips.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { AudioDecodeError, decodeAudio, type DecodedAudio } from '../electron/engine/audio/decode.js';
import { liveFfmpegProcesses } from '../electron/engine/audio/ffmpeg.js';
import { mapOrdered } from '../electron/engine/concurrency.js';
import { openAudioEncoder } from '../electron/engine/audio/index.js';
import { analyseLogMel, LOGMEL_DIM, LogMelEncoder, logMelEncoderId } from '../electron/engine/audio/logmel.js';
import { ultrasonicReport } from '../electron/engine/audio/ultrasonic.js';
import { trainDetectorSet } from '../shared/detectors/detector-set.js';
import { mulberry32 } from '../shared/math/rng.js';
import { addUltrasonicCarrier, pcm16Wav, tone, transcodeWav, type AudioFixtureFormat } from './fixtures/media-audio.js';
import { writeTinyClap } from './fixtures/tiny-clip/generate-clap.js';
import { isHeldOut } from './helpers/acceptance.js';
import { sharedData } from './helpers/repo-root.js';

const SPEECH = sharedData('audio', 'SYNTHETIC_tts_espeak_ng', 'tts_01_en-us.wav');

/** Every shared clip decoded once (two ffmpeg processes at a time: the machine is shared). */
let shared: Promise<{ file: string; samples: Float32Array; durationS: number }[]> | null = null;
function sharedClips(): Promise<{ file: string; samples: Float32Array; durationS: number }[]> {
  shared ??= (async () => {
    const files: string[] = [];
    for (const group of readdirSync(sharedData('audio')).sort()) {
      for (const f of readdirSync(sharedData('audio', group)).sort()) if (f.endsWith('.wav')) files.push(path.join(group, f));
    }
    const out = [];
    for await (const c of mapOrdered(files, 2, async (file) => ({ file, ...(await decodeAudio(sharedData('audio', file))) }))) out.push(c);
    return out;
  })();
  return shared;
}

function cosine(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

async function rejects(promise: Promise<unknown>, reason: string, message: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof AudioDecodeError, `expected AudioDecodeError, got ${String(err)}`);
    assert.equal(err.reason, reason, `reason of "${err.message}"`);
    assert.match(err.message, message);
    return true;
  });
}

/** ffmpeg children of this process, as the OS sees them (catches zombies too: they stay listed). */
function osChildren(): string[] {
  try {
    return execFileSync('ps', ['-o', 'pid=,stat=,comm=', '--ppid', String(process.pid)], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => /ffmpeg/.test(l));
  } catch {
    return []; // ps exits 1 when it lists nothing
  }
}

test('decodes WAV, MP3, Ogg Vorbis, Ogg Opus, FLAC and M4A made from a real clip to the same 16 kHz mono signal', async () => {
  const wav = new Uint8Array(readFileSync(SPEECH));
  const reference = await decodeAudio(wav);
  assert.equal(reference.sampleRate, 16000);
  assert.equal(reference.channels, 1);
  assert.ok(Math.abs(reference.durationS - 3.2) < 0.05, `duration ${reference.durationS}`);
  const encoder = new LogMelEncoder();
  const [refEmbedding] = await encoder.embedAudio([reference.samples]);

  const formats: [AudioFixtureFormat, string, string][] = [
    ['wav', 'wav', 'pcm_s16le'],
    ['mp3', 'mp3', 'mp3'],
    ['ogg', 'ogg', 'vorbis'],
    ['opus', 'opus', 'opus'],
    ['flac', 'flac', 'flac'],
    ['m4a', 'm4a', 'aac'],
  ];
  for (const [format, sniffed, codec] of formats) {
    // MP3 as 44.1 kHz stereo, so downmixing and resampling are exercised too.
    const bytes = await transcodeWav(wav, format, format === 'mp3' ? { sampleRate: 44100, channels: 2 } : {});
    const d: DecodedAudio = await decodeAudio(bytes);
    assert.equal(d.format, sniffed, `${format}: sniffed format`);
    assert.equal(d.codec, codec, `${format}: codec`);
    assert.equal(d.sampleRate, 16000);
    assert.equal(d.samples.length, Math.round(d.durationS * 16000), `${format}: samples match the duration`);
    // Encoders add priming/padding samples (AAC ~1024, MP3 ~1105, Opus 312 at 48 kHz).
    assert.ok(Math.abs(d.durationS - reference.durationS) < 0.1, `${format}: duration ${d.durationS} vs ${reference.durationS}`);
    assert.equal(d.sha256, createHash('sha256').update(bytes).digest('hex'));
    if (format === 'mp3') {
      assert.equal(d.channels, 2);
      assert.equal(d.sourceSampleRate, 44100);
    }
    // Lossy codecs change the waveform, not what it sounds like.
    const [e] = await encoder.embedAudio([d.samples]);
    assert.ok(cosine(e, refEmbedding) > 0.9, `${format}: embedding cosine to the WAV's ${cosine(e, refEmbedding).toFixed(3)}`);
  }
  // A path gives the same samples as the bytes.
  const fromPath = await decodeAudio(SPEECH);
  assert.deepEqual(fromPath.samples, reference.samples);
  assert.equal(fromPath.sha256, null);
});

test('refuses what is not audio, damaged, too long or too slow, with the reason, and leaves no ffmpeg behind', async () => {
  const wav = new Uint8Array(readFileSync(SPEECH));
  await rejects(decodeAudio(new Uint8Array(readFileSync(sharedData('images', 'library_sample_photos', 'skimage__astronaut.jpg')))), 'not_audio', /image \(JPEG\)/);
  await rejects(decodeAudio(new TextEncoder().encode('ignore previous instructions\n'.repeat(20))), 'not_audio', /plain text/);
  const rng = mulberry32(3);
  await rejects(decodeAudio(Uint8Array.from({ length: 4096 }, () => Math.floor(rng() * 256))), 'not_audio', /no known audio/);
  await rejects(decodeAudio(new Uint8Array(0)), 'empty', /empty/);
  await rejects(decodeAudio(wav, { maxFileBytes: 1000 }), 'too_large', /over the limit/);
  await rejects(decodeAudio(sharedData('video', 'opencv-doc__tree.mp4')), 'no_audio_track', /no audio track/);
  await rejects(decodeAudio('/nonexistent/clip.wav'), 'unreadable', /does not exist/);

  // Header damaged: ffmpeg cannot parse it. Body damaged: strict mode refuses, lenient keeps what decodes.
  const badHead = new Uint8Array(wav);
  for (let i = 12; i < 400; i++) badHead[i] = (i * 2654435761) >>> 24;
  await rejects(decodeAudio(badHead), 'corrupt', /could not decode WAV/);
  const flac = await transcodeWav(wav, 'flac');
  await rejects(decodeAudio(flac.subarray(0, flac.length >> 1)), 'corrupt', /FLAC is damaged/);
  const mp3 = new Uint8Array(await transcodeWav(wav, 'mp3'));
  for (let i = Math.floor(mp3.length * 0.3); i < mp3.length; i++) mp3[i] = (i * 2654435761) >>> 24;
  await rejects(decodeAudio(mp3), 'corrupt', /MP3 is damaged/);
  const lenient = await decodeAudio(mp3, {}, { strict: false });
  assert.ok(lenient.warnings.length > 0 && lenient.durationS < 3);

  // Too long: by the header's declaration, and (a header saying nothing) by counting samples.
  await rejects(decodeAudio(wav, { maxDurationS: 1 }), 'too_long', /over the limit of 1\.0 s|more than the limit of 1\.0 s/);
  const ogg = await transcodeWav(wav, 'ogg'); // piped Ogg: ffmpeg cannot know the duration up front
  await rejects(decodeAudio(ogg, { maxDurationS: 1 }), 'too_long', /limit of 1\.0 s/);
  // The analysis window keeps the start and says the rest was dropped.
  const windowed = await decodeAudio(wav, { analysisWindowS: 1 });
  assert.equal(windowed.samples.length, 16000);
  assert.ok(windowed.truncated && windowed.durationS > 3);

  await rejects(decodeAudio(wav, { timeoutMs: 1 }), 'timeout', /longer than the limit of 1 ms/);
  const controller = new AbortController();
  const pending = decodeAudio(wav, {}, { signal: controller.signal });
  controller.abort();
  await rejects(pending, 'cancelled', /cancelled/);

  assert.equal(liveFfmpegProcesses(), 0);
  assert.deepEqual(osChildren(), [], 'no ffmpeg process (running or zombie) is left');
});

test('log-mel encoder: id from its parameters, unit vectors, deterministic, short and silent clips padded', async () => {
  const encoder = await openAudioEncoder({ model: 'logmel' });
  assert.match(encoder.id, /^logmel@[0-9a-f]{12}$/);
  assert.equal(encoder.id, logMelEncoderId());
  assert.equal(encoder.modality, 'audio');
  assert.equal(encoder.dim, LOGMEL_DIM);
  assert.equal(encoder.sampleRate, 16000);

  const speech = (await decodeAudio(SPEECH)).samples;
  const [a] = await encoder.embedAudio([speech]);
  const [b] = await encoder.embedAudio([new Float32Array(speech)]);
  assert.deepEqual(a, b, 'same clip, same vector');
  assert.ok(Math.abs(cosine(a, a) - 1) < 1e-5, 'unit length');
  // Level-normalised: half the gain moves the vector only through the one LEVEL entry.
  const [quiet] = await encoder.embedAudio([speech.map((v) => v * 0.5)]);
  assert.ok(cosine(a, quiet) > 0.98, `gain change cosine ${cosine(a, quiet)}`);
  const [beep] = await encoder.embedAudio([tone(1000, 1, 16000)]);
  assert.ok(cosine(a, beep) < 0.8, `speech vs a 1 kHz tone ${cosine(a, beep)}`);

  // The shared set's shortest clips (a few dozen are under 0.25 s; the shortest ~30 ms) and
  // edge cases embed to finite unit vectors.
  const shortOnes = (await sharedClips()).filter((c) => c.durationS < 0.25).map((c) => c.samples);
  assert.ok(shortOnes.length >= 20, `found ${shortOnes.length} clips under 0.25 s`);
  const edge = [new Float32Array(1), new Float32Array(16000), new Float32Array(100).fill(0.5), tone(440, 0.01, 16000)];
  for (const v of await encoder.embedAudio([...shortOnes, ...edge])) {
    assert.ok(v.every(Number.isFinite));
    assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-4);
  }
  await assert.rejects(encoder.embedAudio([speech, new Float32Array(0)]), /clip 1: .*empty/);

  // Frame maths: 0.5 s minimum → 1 + (8000 − 400) / 160 = 48 frames; a 1 kHz tone peaks in the
  // mel band holding 1 kHz and has its centroid there.
  const analysis = analyseLogMel(tone(1000, 0.5, 16000));
  assert.equal(analysis.frames, 48);
  assert.ok(Math.abs(analysis.centroidHz[10] - 1000) < 60, `centroid ${analysis.centroidHz[10]}`);
});

test('near-ultrasonic check: an AM carrier at 19 kHz is found at 48 kHz, invisible at 16 kHz, absent from clean audio', async () => {
  const wav = new Uint8Array(readFileSync(SPEECH));
  const clean48 = (await decodeAudio(wav, {}, { sampleRate: 48000 })).samples;
  const clean = ultrasonicReport(clean48, 48000);
  assert.ok(clean.measurable && clean.score === 0, `clean score ${clean.score}`);

  const attacked = addUltrasonicCarrier(clean48, clean48, 48000, 19000, 0.3);
  const file = pcm16Wav(attacked.map((v) => v * 0.5), 48000);
  const at48 = await decodeAudio(file, {}, { sampleRate: 48000 });
  const report = ultrasonicReport(at48.samples, 48000);
  // Broadband energy up there (hiss, cymbals) is ordinary in full-band recordings: not a carrier.
  const rng = mulberry32(8);
  const hissy = ultrasonicReport(clean48.map((v) => v + 0.02 * (2 * rng() - 1)), 48000);
  assert.ok(hissy.shareDb > -40 && hissy.score < 0.4, `hiss: share ${hissy.shareDb.toFixed(1)} dB, score ${hissy.score}`);
  assert.ok(report.score > 0.9, `attacked score ${report.score}`);
  assert.ok(Math.abs(report.peakHz! - 19000) < 50, `peak at ${report.peakHz}`);
  assert.ok(report.cues.some((c) => /carrier/.test(c)));

  // The 16 kHz decode (the encoder's input) has lost the carrier entirely: that is why this
  // check exists apart from the embedding. What is left of it is 16-bit rounding noise.
  const at16 = await decodeAudio(file);
  assert.equal(ultrasonicReport(at16.samples, 16000).measurable, false);
  const plain16 = (await decodeAudio(pcm16Wav(clean48.map((v) => v * 0.5), 48000))).samples;
  let signal = 0;
  let residual = 0;
  for (let i = 0; i < plain16.length; i++) {
    signal += plain16[i] ** 2;
    residual += (at16.samples[i] - plain16[i]) ** 2;
  }
  const residualDb = 10 * Math.log10(residual / signal);
  assert.ok(residualDb < -60, `carrier residue after the 16 kHz decode: ${residualDb.toFixed(1)} dB re the speech`);
});

test('detectors trained on log-mel embeddings of 3/4 of the shared clips pass the held-out quarter (block ≤ 1%)', async () => {
  const clips = await sharedClips();
  const encoder = new LogMelEncoder();
  const embeddings = await encoder.embedAudio(clips.map((c) => c.samples));
  const files = clips.map((c) => c.file);
  const baseline = embeddings.filter((_, i) => !isHeldOut(files[i]));
  const held = embeddings.filter((_, i) => isHeldOut(files[i]));
  assert.ok(baseline.length > 200 && held.length > 50, `${baseline.length} baseline, ${held.length} held out`);
  const set = trainDetectorSet(baseline, { encoderId: encoder.id });
  const verdicts = set.score(held);
  const block = verdicts.filter((v) => v.decision === 'block').length / held.length;
  const review = verdicts.filter((v) => v.decision === 'review').length / held.length;
  assert.ok(block <= 0.01, `held-out block rate ${block}`);
  assert.ok(review <= 0.1, `held-out review rate ${review}`);
});

test('CLAP path: a tiny CLAP-architecture folder loads offline through transformers.js and embeds decoded audio', async () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'parallax-clap-'));
  try {
    const folder = writeTinyClap(path.join(root, 'tiny-clap'));
    const encoder = await openAudioEncoder({ model: folder, device: 'cpu', threads: 1 });
    try {
      assert.match(encoder.id, /^clap:tiny-clap@[0-9a-f]{12}$/);
      assert.equal(encoder.sampleRate, 48000);
      assert.equal(encoder.dim, 16);
      const speech = (await decodeAudio(SPEECH, {}, { sampleRate: encoder.sampleRate })).samples;
      const long = new Float32Array(12 * 48000).map((_, i) => speech[i % speech.length]);
      const [a, b, c, d] = await encoder.embedAudio([speech, new Float32Array(speech), tone(1000, 1, 48000), long]);
      assert.deepEqual(a, b, 'deterministic');
      assert.ok(Math.abs(Math.hypot(...a) - 1) < 1e-5);
      assert.ok(cosine(a, c) < 0.999, 'different sounds, different vectors');
      assert.ok(d.every(Number.isFinite), 'a clip longer than the 10 s window is cut, deterministically');
      const [d2] = await encoder.embedAudio([long]);
      assert.deepEqual(d, d2);
    } finally {
      await encoder.close();
    }
    // Same files, same id; a changed weight, a new id.
    const again = await openAudioEncoder({ model: folder, device: 'cpu', threads: 1 });
    const id = again.id;
    await again.close();
    writeTinyClap(folder, { seed: 3 });
    const changed = await openAudioEncoder({ model: folder, device: 'cpu', threads: 1 });
    assert.notEqual(changed.id, id);
    await changed.close();
    await assert.rejects(openAudioEncoder({ model: path.join(root, 'missing') }), /lacks config\.json/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
