// One place that maps signal names to detector classes, for building from config and
// restoring from saved state.

import type { Detector, DetectorState, SignalName } from '../types.js';
import type { BruteForceIndex } from '../math/vector-index.js';
import { LID_DEFAULTS, LidDetector, type LidParams } from './lid.js';
import type { CheapSignalName } from './signals.js';
import type { EmbeddingDetector, EmbeddingDetectorState } from './types.js';
import { AUTOENCODER_DEFAULTS, AutoencoderDetector, type AutoencoderParams } from './autoencoder.js';
import { CLUSTER_DEFAULTS, ClusterDetector, type ClusterParams } from './cluster.js';
import { ISOLATION_FOREST_DEFAULTS, IsolationForestDetector, type IsolationForestParams } from './isolation-forest.js';
import { KNN_DEFAULTS, KnnDetector, type KnnParams } from './knn.js';
import { MAHALANOBIS_DEFAULTS, MahalanobisDetector, type MahalanobisParams } from './mahalanobis.js';

export interface DetectorParamsMap {
  isolation_forest: IsolationForestParams;
  autoencoder: AutoencoderParams;
  knn: KnnParams;
  mahalanobis: MahalanobisParams;
  cluster: ClusterParams;
}

/** Parameters of every cheap (embedding-only) signal, LID included. */
export interface CheapDetectorParamsMap extends DetectorParamsMap {
  lid: LidParams;
}

export interface DetectorClassMap {
  isolation_forest: IsolationForestDetector;
  autoencoder: AutoencoderDetector;
  knn: KnnDetector;
  mahalanobis: MahalanobisDetector;
  cluster: ClusterDetector;
}

export const DEFAULT_DETECTOR_PARAMS: { readonly [K in SignalName]: Readonly<DetectorParamsMap[K]> } = {
  isolation_forest: ISOLATION_FOREST_DEFAULTS,
  autoencoder: AUTOENCODER_DEFAULTS,
  knn: KNN_DEFAULTS,
  mahalanobis: MAHALANOBIS_DEFAULTS,
  cluster: CLUSTER_DEFAULTS,
};

export const DEFAULT_CHEAP_DETECTOR_PARAMS: { readonly [K in CheapSignalName]: Readonly<CheapDetectorParamsMap[K]> } = {
  ...DEFAULT_DETECTOR_PARAMS,
  lid: LID_DEFAULTS,
};

/** Builds an unfitted detector; params are validated (unknown keys and bad values throw). */
export function createDetector<K extends SignalName>(name: K, params?: Partial<DetectorParamsMap[K]>): DetectorClassMap[K];
export function createDetector(name: SignalName, params: Record<string, unknown> = {}): Detector {
  switch (name) {
    case 'isolation_forest': return new IsolationForestDetector(params);
    case 'autoencoder': return new AutoencoderDetector(params);
    case 'knn': return new KnnDetector(params);
    case 'mahalanobis': return new MahalanobisDetector(params);
    case 'cluster': return new ClusterDetector(params);
    default: throw new RangeError(`unknown detector "${String(name)}"`);
  }
}

/** createDetector for every cheap signal, LID included. */
export function createEmbeddingDetector(name: CheapSignalName, params: Record<string, unknown> = {}): EmbeddingDetector {
  if (name === 'lid') return new LidDetector(params);
  return createDetector(name, params as never);
}

/** detectorFromJSON for every cheap signal; LID may share the kNN index (see LidDetector.useIndex). */
export function embeddingDetectorFromJSON(state: EmbeddingDetectorState, sharedIndex?: BruteForceIndex): EmbeddingDetector {
  if (state?.name === 'lid') return LidDetector.fromJSON(state, sharedIndex);
  return detectorFromJSON(state as DetectorState);
}

export function detectorFromJSON(state: DetectorState): Detector {
  switch (state?.name) {
    case 'isolation_forest': return IsolationForestDetector.fromJSON(state);
    case 'autoencoder': return AutoencoderDetector.fromJSON(state);
    case 'knn': return KnnDetector.fromJSON(state);
    case 'mahalanobis': return MahalanobisDetector.fromJSON(state);
    case 'cluster': return ClusterDetector.fromJSON(state);
    default: throw new RangeError(`unknown detector state "${String(state?.name)}"`);
  }
}

export { AutoencoderDetector, ClusterDetector, IsolationForestDetector, KnnDetector, LidDetector, MahalanobisDetector };
export type { AutoencoderParams, ClusterParams, IsolationForestParams, KnnParams, LidParams, MahalanobisParams };
