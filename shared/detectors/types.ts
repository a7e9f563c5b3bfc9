// The detector shape every cheap (embedding-only) signal implements. It is shared/types.ts's
// Detector with the name widened to the cheap signals defined here (see signals.ts), so the
// five original detectors satisfy it unchanged.
import type { Detector, DetectorState } from '../types.js';
import type { CheapSignalName } from './signals.js';

export interface EmbeddingDetectorState extends Omit<DetectorState, 'name'> {
  name: CheapSignalName;
}

export interface EmbeddingDetector extends Omit<Detector, 'name' | 'toJSON'> {
  readonly name: CheapSignalName;
  toJSON(): EmbeddingDetectorState;
}
