// Audio red team: perturbed copies of audio clips, written as WAV with a manifest in the image
// red team's format ('parallax.redteam/1'), so `parallax eval` scores them like image sets.
//
//   audio-noise       white-noise bursts (3 × 60 ms at 0 dB SNR re the clip's RMS): crude
//                     splices and glitches, the audio analogue of a pasted patch;
//   audio-ultrasonic  an AM carrier at 19 kHz (the clip's own waveform as the message, carrier
//                     RMS equal to the clip's), written at 48 kHz: the file form of an inaudible
//                     command injection (DolphinAttack). The 16 kHz encoder cannot hear it: the
//                     engine's ultrasonic check (scan-audio.ts) is what must catch it;
//   audio-spsa        L-inf PGD with SPSA gradients against the configured audio encoder
//                     (audio/spsa.ts), pushing the embedding away; eps in sample units.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Rng } from '../../../shared/types.js';
import { deriveRng } from '../../../shared/math/rng.js';
import { decodeAudio, spsaAudioAway, type AudioEncoder } from '../audio/index.js';

export const AUDIO_ATTACKS = ['audio-noise', 'audio-ultrasonic', 'audio-spsa'] as const;
export type AudioAttackName = (typeof AUDIO_ATTACKS)[number];

export function isAudioAttack(name: string | undefined): name is AudioAttackName {
  return (AUDIO_ATTACKS as readonly string[]).includes(name ?? '');
}

export interface AudioRedteamItem {
  source: string;
  output: string;
  sha256: string;
  sample_rate: number;
  /** Cosine distance between the clean and the attacked clip's embeddings (at the encoder's rate). */
  embedding_shift: number;
  /** Largest per-sample change, full scale 1. */
  linf: number;
  queries: number;
}

export interface AudioRedteamManifest {
  format: 'parallax.redteam/1';
  attack: AudioAttackName;
  family: string;
  eps: number | null;
  encoder_id: string;
  seed: number;
  created_at: string;
  params: Record<string, number | string>;
  items: AudioRedteamItem[];
  errors: { source: string; reason: string }[];
  seconds: number;
}

export interface AudioRedteamOptions {
  files: string[];
  attack: AudioAttackName;
  out: string;
  encoder: AudioEncoder;
  /** audio-spsa: L-inf budget in sample units (default 0.01 ≈ −40 dBFS). */
  eps?: number;
  steps?: number;
  samples?: number;
  seed?: number;
  errors?: { source: string; reason: string }[];
  signal?: AbortSignal;
  onProgress?: (p: { done: number; total: number }) => void;
}

const CARRIER_HZ = 19_000;
const ULTRA_RATE = 48_000;

export async function runAudioRedteam(opts: AudioRedteamOptions): Promise<AudioRedteamManifest> {
  const started = performance.now();
  const seed = opts.seed ?? 1;
  const eps = opts.attack === 'audio-spsa' ? (opts.eps ?? 0.01) : null;
  const params: Record<string, number | string> =
    opts.attack === 'audio-noise'
      ? { bursts: 3, burst_s: 0.06, snr_db: 0 }
      : opts.attack === 'audio-ultrasonic'
        ? { carrier_hz: CARRIER_HZ, sample_rate: ULTRA_RATE, level: 1, modulation: 'the clip itself, depth 0.8' }
        : { eps: eps!, steps: opts.steps ?? 20, samples: opts.samples ?? 8, tile: 32 };
  fs.mkdirSync(opts.out, { recursive: true });
  const manifest: AudioRedteamManifest = {
    format: 'parallax.redteam/1',
    attack: opts.attack,
    family: opts.attack,
    eps,
    encoder_id: opts.encoder.id,
    seed,
    created_at: new Date().toISOString(),
    params,
    items: [],
    errors: opts.errors ?? [],
    seconds: 0,
  };
  const enc = opts.encoder;
  for (const [index, file] of opts.files.entries()) {
    if (opts.signal?.aborted) throw new Error('cancelled');
    try {
      const bytes = fs.readFileSync(file);
      const sha = createHash('sha256').update(bytes).digest();
      const rng = deriveRng(seed, AUDIO_ATTACKS.indexOf(opts.attack), sha.readInt32LE(0));
      const clean = (await decodeAudio(bytes, {}, { sampleRate: enc.sampleRate })).samples;
      let out: Float32Array;
      let rate = enc.sampleRate;
      let queries = 0;
      let heard: Float32Array;
      if (opts.attack === 'audio-noise') {
        out = noiseBursts(clean, enc.sampleRate, rng);
        heard = out;
      } else if (opts.attack === 'audio-ultrasonic') {
        rate = ULTRA_RATE;
        const host = (await decodeAudio(bytes, {}, { sampleRate: ULTRA_RATE })).samples;
        out = ultrasonicCarrier(host, rate);
        heard = (await decodeAudio(pcm16Wav(out, rate), {}, { sampleRate: enc.sampleRate })).samples;
      } else {
        const r = await spsaAudioAway(clean, enc, { eps: eps!, rng, steps: opts.steps, samples: opts.samples });
        out = r.clip;
        heard = r.clip;
        queries = r.queries;
      }
      const wav = pcm16Wav(out, rate);
      const name = `${String(index + 1).padStart(4, '0')}-${path.basename(file).replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80) || 'clip'}.wav`;
      fs.writeFileSync(path.join(opts.out, name), wav);
      const [a, b] = await enc.embedAudio([clean, heard]);
      let dot = 0;
      for (let i = 0; i < a.length; i++) dot += a[i] * b[i];
      let linf = 0;
      if (rate === enc.sampleRate) for (let i = 0; i < Math.min(clean.length, out.length); i++) linf = Math.max(linf, Math.abs(out[i] - clean[i]));
      manifest.items.push({
        source: file,
        output: name,
        sha256: createHash('sha256').update(wav).digest('hex'),
        sample_rate: rate,
        embedding_shift: Math.round((1 - dot) * 1e6) / 1e6,
        linf: Math.round(linf * 1e6) / 1e6,
        queries,
      });
    } catch (err) {
      manifest.errors.push({ source: file, reason: err instanceof Error ? err.message : String(err) });
    }
    opts.onProgress?.({ done: index + 1, total: opts.files.length });
  }
  manifest.seconds = (performance.now() - started) / 1000;
  fs.writeFileSync(path.join(opts.out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/** Three 60 ms bursts of white noise at 0 dB SNR re the clip's RMS, at random places. */
export function noiseBursts(clip: Float32Array, sampleRate: number, rng: Rng, count = 3, burstS = 0.06, snrDb = 0): Float32Array {
  const out = new Float32Array(clip);
  let e = 0;
  for (const v of clip) e += v * v;
  const rms = Math.sqrt(e / Math.max(1, clip.length)) || 0.01;
  const amp = rms * 10 ** (-snrDb / 20) * Math.sqrt(3);
  const len = Math.min(clip.length, Math.round(burstS * sampleRate));
  for (let b = 0; b < count; b++) {
    const start = Math.floor(rng() * Math.max(1, clip.length - len));
    for (let i = 0; i < len; i++) out[start + i] = clamp(out[start + i] + amp * (2 * rng() - 1));
  }
  return out;
}

/** host + an AM carrier at 19 kHz carrying host's own waveform, with the host's RMS; peak-normalised if it would clip. */
export function ultrasonicCarrier(host: Float32Array, sampleRate: number, carrierHz = CARRIER_HZ): Float32Array {
  let peak = 0;
  let e = 0;
  for (const v of host) {
    peak = Math.max(peak, Math.abs(v));
    e += v * v;
  }
  const am = new Float32Array(host.length);
  let ea = 0;
  for (let i = 0; i < host.length; i++) {
    const m = peak > 0 ? host[i] / peak : 0;
    am[i] = (1 + 0.8 * m) * Math.cos((2 * Math.PI * carrierHz * i) / sampleRate);
    ea += am[i] * am[i];
  }
  const scale = Math.max(Math.sqrt(e / Math.max(1, host.length)), 1e-3) / Math.max(Math.sqrt(ea / Math.max(1, host.length)), 1e-9);
  const out = new Float32Array(host.length);
  let outPeak = 0;
  for (let i = 0; i < host.length; i++) {
    out[i] = host[i] + scale * am[i];
    outPeak = Math.max(outPeak, Math.abs(out[i]));
  }
  if (outPeak > 1) for (let i = 0; i < out.length; i++) out[i] /= outPeak;
  return out;
}

/** Mono 16-bit PCM WAV. */
export function pcm16Wav(samples: Float32Array, sampleRate: number): Uint8Array {
  const data = samples.length * 2;
  const buf = Buffer.alloc(44 + data);
  buf.write('RIFF', 0, 'ascii');
  buf.writeUInt32LE(36 + data, 4);
  buf.write('WAVE', 8, 'ascii');
  buf.write('fmt ', 12, 'ascii');
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20);
  buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(sampleRate, 24);
  buf.writeUInt32LE(sampleRate * 2, 28);
  buf.writeUInt16LE(2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write('data', 36, 'ascii');
  buf.writeUInt32LE(data, 40);
  for (let i = 0; i < samples.length; i++) buf.writeInt16LE(Math.round(clamp(samples[i]) * 32767), 44 + 2 * i);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

function clamp(x: number): number {
  return Math.max(-1, Math.min(1, x));
}
