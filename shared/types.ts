// Domain types shared by the engine, the CLI, the API contract and the renderer.
// Pure TypeScript: no Node, no DOM.

export type Modality = 'image' | 'audio' | 'video';
export type Decision = 'allow' | 'review' | 'block';
export type LabelValue = 'benign' | 'malicious';

/** The signals of the engine. One name per concept, everywhere (CLI, SQL, API, UI). */
export type SignalName = 'isolation_forest' | 'autoencoder' | 'knn' | 'mahalanobis' | 'cluster';
export const SIGNAL_NAMES: readonly SignalName[] = ['isolation_forest', 'autoencoder', 'knn', 'mahalanobis', 'cluster'];

/** Seeded pseudo-random source in [0, 1). Every stochastic fit takes one so results are reproducible. */
export type Rng = () => number;

/**
 * A detector in the scikit-learn / PyOD shape: fit on baseline embeddings, score new ones
 * (higher = more anomalous), serialise to JSON and back.
 */
export interface Detector {
  readonly name: SignalName;
  /** Algorithm version: bumps when the scoring of the same state changes. */
  readonly version: string;
  fit(X: readonly Float32Array[], rng: Rng): void;
  score(X: readonly Float32Array[]): number[];
  toJSON(): DetectorState;
}

export interface DetectorState {
  name: SignalName;
  version: string;
  params: Record<string, unknown>;
  /** Arrays of numbers are stored as base64 of little-endian float32 where they are large. */
  state: Record<string, unknown>;
}

export interface SignalResult {
  /** Raw detector score (higher = more anomalous); its scale is the detector's own. */
  raw: number;
  /** Calibrated risk: the share of held-out legitimate items this item is more unusual than. */
  risk: number;
  /** Tail probability under the baseline, p = P(legitimate score >= raw), extrapolated past the calibration set. */
  p: number;
  weight: number;
  /** This signal's share of the fused evidence, in [0, 1]; shares of one verdict sum to 1 (or all 0). */
  share: number;
  /** What a rule-based check found, in words (e.g. the text OCR read in the image). */
  detail?: string;
}

export interface Neighbour {
  itemId: number;
  sha256: string;
  path: string | null;
  distance: number;
}
