// Public entry point of the audio package: decode, pick and open an audio encoder, and the
// checks that live outside the embedding (near-ultrasonic energy).
import { LogMelEncoder } from './logmel.js';
import type { AudioEncoder } from './encoder.js';
import type { EncoderDevice } from '../encoders/providers.js';

export type { AudioEncoder } from './encoder.js';
export { AudioDecodeError, decodeAudio, DEFAULT_AUDIO_LIMITS, type AudioDecodeOptions, type AudioFailure, type AudioLimits, type DecodedAudio } from './decode.js';
export { LogMelEncoder, LOGMEL_DIM, LOGMEL_PARAMS, logMelEncoderId, analyseLogMel } from './logmel.js';
export { ultrasonicReport, type UltrasonicReport } from './ultrasonic.js';
export { spsaAudioAway, type AudioAttackResult, type AudioSpsaOptions } from './spsa.js';

export interface AudioEncoderConfig {
  /** 'logmel' (built in, no weights) or the path of a local CLAP model folder. */
  model: 'logmel' | (string & {});
  device?: EncoderDevice;
  threads?: number;
}

export async function openAudioEncoder(config: AudioEncoderConfig): Promise<AudioEncoder> {
  if (config.model === 'logmel') return new LogMelEncoder();
  // Loaded lazily: transformers.js costs ~0.4 s to import and most installs never use it.
  const { openClapEncoder } = await import('./clap.js');
  return openClapEncoder(config.model, { device: config.device, threads: config.threads });
}
