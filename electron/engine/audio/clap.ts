// CLAP (Contrastive Language-Audio Pretraining) from a local model folder, through
// @huggingface/transformers, as an AudioEncoder.
//
// The folder has the layout of a converted CLAP checkpoint (e.g. Xenova/clap-htsat-unfused):
// config.json (model_type 'clap'), preprocessor_config.json (ClapFeatureExtractor) and
// onnx/audio_model.onnx (input_features → audio_embeds). It is loaded as such a checkpoint is
// (ClapAudioModelWithProjection + AutoProcessor) with remote models disabled.
//
// Determinism: the feature extractor crops clips longer than its window (10 s) at a RANDOM
// offset ('rand_trunc'); this class crops them to their first window itself, so the same clip
// always gives the same vector. Shorter clips are repeat-padded by the extractor ('repeatpad').
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import type { EncoderDevice } from '../encoders/providers.js';
import { defaultThreads } from '../encoders/providers.js';
import type { AudioEncoder } from './encoder.js';

type Transformers = typeof import('@huggingface/transformers');

export interface ClapEncoderOptions {
  device?: EncoderDevice;
  threads?: number;
  dtype?: 'fp32' | 'fp16' | 'q8';
}

const SUFFIX = { fp32: '', fp16: '_fp16', q8: '_quantized' } as const;
const CONFIGS = ['config.json', 'preprocessor_config.json'] as const;

let loadQueue: Promise<unknown> = Promise.resolve();

export class ClapAudioEncoder implements AudioEncoder {
  readonly modality = 'audio' as const;
  private closed = false;

  constructor(
    readonly id: string,
    readonly dim: number,
    readonly sampleRate: number,
    /** Samples the extractor looks at (its nb_max_samples); longer clips are cut to their start. */
    readonly windowSamples: number,
    readonly provider: string,
    readonly providerNote: string,
    private readonly model: Awaited<ReturnType<Transformers['ClapAudioModelWithProjection']['from_pretrained']>>,
    private readonly processor: Awaited<ReturnType<Transformers['AutoProcessor']['from_pretrained']>>,
  ) {}

  async embedAudio(clips: readonly Float32Array[]): Promise<Float32Array[]> {
    if (this.closed) throw new Error(`encoder ${this.id} is closed`);
    const out: Float32Array[] = [];
    for (const [i, clip] of clips.entries()) {
      if (clip.length === 0) throw new RangeError(`encoder ${this.id}: clip ${i}: the clip is empty (0 samples)`);
      const input = clip.length > this.windowSamples ? clip.slice(0, this.windowSamples) : clip;
      const features = await this.processor(input);
      const result = await this.model(features);
      const t = result.audio_embeds as { dims: number[]; data: Float32Array } | undefined;
      if (!t || t.dims.join(',') !== `1,${this.dim}`) throw new Error(`encoder ${this.id}: the model returned ${t ? `[${t.dims}]` : 'nothing'} for audio_embeds, expected [1,${this.dim}]`);
      out.push(unit(t.data));
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.model.dispose();
  }
}

function unit(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
  return Float32Array.from(v, (x) => x * inv);
}

/** Opens the CLAP model in `folder`; id `clap:<folder name>@<12 hex of the ONNX file and configs>`. */
export async function openClapEncoder(folder: string, options: ClapEncoderOptions = {}): Promise<ClapAudioEncoder> {
  const dir = path.resolve(folder);
  const dtype = options.dtype ?? 'fp32';
  const onnx = path.join('onnx', `audio_model${SUFFIX[dtype]}.onnx`);
  const missing = [...CONFIGS, onnx].filter((f) => !existsSync(path.join(dir, f)));
  if (missing.length) throw new Error(`CLAP model folder ${dir} lacks ${missing.join(', ')}`);
  const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as { model_type?: string };
  if (config.model_type !== 'clap') throw new Error(`${path.join(dir, 'config.json')}: model_type is '${config.model_type}', expected 'clap'`);
  const pre = JSON.parse(readFileSync(path.join(dir, 'preprocessor_config.json'), 'utf8')) as { sampling_rate?: number; nb_max_samples?: number; max_length_s?: number };
  const sampleRate = pre.sampling_rate ?? 48000;
  const windowSamples = pre.nb_max_samples ?? Math.round((pre.max_length_s ?? 10) * sampleRate);

  const device = options.device === 'webgpu' || options.device === 'cuda' ? options.device : 'cpu';
  const threads = defaultThreads(options.threads);
  const tf = await import('@huggingface/transformers');
  const run = loadQueue.then(async () => {
    tf.env.allowRemoteModels = false;
    tf.env.allowLocalModels = true;
    tf.env.localModelPath = path.dirname(dir);
    const name = path.basename(dir);
    return Promise.all([
      tf.ClapAudioModelWithProjection.from_pretrained(name, {
        local_files_only: true,
        dtype,
        device,
        session_options: { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' },
      }),
      tf.AutoProcessor.from_pretrained(name, { local_files_only: true }),
    ]);
  });
  loadQueue = run.catch(() => undefined);
  const [model, processor] = await run.catch((err: unknown) => {
    throw new Error(`cannot load the CLAP model in ${dir}: ${(err as Error).message}`, { cause: err });
  });

  const hash = createHash('sha256');
  for (const f of [...CONFIGS, onnx]) hash.update(f).update('\0').update(readFileSync(path.join(dir, f)));
  hash.update(JSON.stringify({ crop: 'first-window' }));
  const id = `clap:${path.basename(dir)}@${hash.digest('hex').slice(0, 12)}`;

  const probe = await model(await processor(new Float32Array(sampleRate)));
  const dim = probe.audio_embeds?.dims?.[1];
  if (!Number.isInteger(dim) || dim < 1) throw new Error(`CLAP model in ${dir}: no [N, dim] 'audio_embeds' output`);
  const note = options.device === 'auto' || options.device === undefined ? 'auto: cpu (GPU selection is not wired for transformers.js models)' : `${device} requested`;
  return new ClapAudioEncoder(id, dim, sampleRate, windowSamples, device, `${note} (${threads} threads, transformers.js)`, model, processor);
}
