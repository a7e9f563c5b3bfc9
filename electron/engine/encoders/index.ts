// Public entry point of the encoders package: pick and open an image encoder from configuration.
import { openBackboneEncoder, openMobileNetEncoder } from './mobilenet.js';
import type { ImageEncoder } from './encoder.js';
import type { EncoderDevice } from './providers.js';

export type { ImageEncoder, PreprocessingSpec } from './encoder.js';
export { encoderId, l2Normalised } from './encoder.js';
export type { EncoderDevice, ExecutionProvider } from './providers.js';
export { createSession } from './providers.js';
export { openMobileNetEncoder, openBackboneEncoder, OnnxBackboneEncoder, MOBILENET_V2_ARTIFACT } from './mobilenet.js';
export { defaultModelDir } from './paths.js';

/** Cross encoders (the cross_encoder signal's second opinion) by config name → built artifact. */
export const CROSS_ENCODER_ARTIFACTS: Readonly<Record<string, string>> = Object.freeze({ inception_v3: 'inception_v3_backbone' });

/** Opens the cross encoder a configuration names (batches of at most 16: it is ~9× the primary's work per image). */
export function openCrossEncoder(
  name: string,
  options: { device: EncoderDevice; batchSize: number; threads?: number; modelDir?: string },
): Promise<ImageEncoder> {
  const artifact = CROSS_ENCODER_ARTIFACTS[name];
  if (!artifact) return Promise.reject(new Error(`cross encoder ${name} is not available (available: ${Object.keys(CROSS_ENCODER_ARTIFACTS).join(', ')})`));
  return openBackboneEncoder(artifact, { device: options.device, batchSize: Math.min(options.batchSize, 16), threads: options.threads, modelDir: options.modelDir });
}

export interface ImageEncoderConfig {
  /** 'mobilenet_v2' (built in), or the path of a folder holding a CLIP model (not implemented yet). */
  model: 'mobilenet_v2' | (string & {});
  device: EncoderDevice;
  batchSize: number;
  /** Where built models live (default: models/build/ in the package). */
  modelDir?: string;
  /** CPU intra-op threads; 0 or undefined = one per core. */
  threads?: number;
}

export async function openImageEncoder(config: ImageEncoderConfig): Promise<ImageEncoder> {
  switch (config.model) {
    case 'mobilenet_v2':
      return openMobileNetEncoder({ modelDir: config.modelDir, device: config.device, batchSize: config.batchSize, threads: config.threads });
    default:
      // CLIP models (a folder path) will come through @huggingface/transformers.
      throw new Error(`encoder ${config.model} not implemented yet (available: mobilenet_v2)`);
  }
}
