// The audio encoder seam: the same contract as ImageEncoder (fixed-length, L2-normalised vectors
// keyed by an id that covers everything that determines them), for mono PCM clips. The detectors
// downstream are modality-blind: they are fitted on whatever vectors an encoder produces.

export interface AudioEncoder {
  /** e.g. 'logmel@<12 hex>' or 'clap:<folder>@<12 hex>'. */
  readonly id: string;
  readonly modality: 'audio';
  readonly dim: number;
  /** The rate clips must be decoded at (decodeAudio's `sampleRate`). */
  readonly sampleRate: number;
  /** 'cpu' for the log-mel encoder; the ONNX provider for model-based encoders. */
  readonly provider: string;
  readonly providerNote: string;
  /** Mono float32 clips at `sampleRate` → one unit-length embedding each. */
  embedAudio(clips: readonly Float32Array[]): Promise<Float32Array[]>;
  close(): Promise<void>;
}
