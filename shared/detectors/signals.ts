// The detection signals and the tier each belongs to.
//
// shared/types.ts names the five statistical signals (SignalName, SIGNAL_NAMES). The
// attack-aware signals extend that list here rather than there, so code that enumerates
// SIGNAL_NAMES keeps seeing exactly the five it was written for.
//
//  - cheap tier: functions of the item's embedding alone (the five, plus LID). Always run.
//  - expensive tier: need more forward passes of an encoder. `squeeze` re-encodes squeezed
//    copies of the pixels (~4 passes); `cross_encoder` encodes the item with a second,
//    architecturally different network; `cross_regression` reuses that second embedding
//    (no extra pass) to predict the primary one; `squeeze_cross` asks whether squeezing moves
//    the primary embedding back towards that prediction (it reuses squeeze's squeezed
//    embeddings and the secondary embedding: no extra pass, and it runs only for items on
//    which squeeze and cross_encoder both run); `patch_texture` measures colour noise in the
//    noisiest small window of the encoder's input (no encoder pass at all, but it needs the
//    pixels, which the cheap tier does not keep). Each runs always, only when the cheap tier is
//    inconclusive, or never (TierMode).
import type { SignalName } from '../types.js';
import { SIGNAL_NAMES } from '../types.js';

export type CheapSignalName = SignalName | 'lid';
export type ExpensiveSignalName = 'squeeze' | 'cross_encoder' | 'cross_regression' | 'squeeze_cross' | 'patch_texture';
export type DetectionSignalName = CheapSignalName | ExpensiveSignalName;

export const CHEAP_SIGNALS: readonly CheapSignalName[] = [...SIGNAL_NAMES, 'lid'];
export const EXPENSIVE_SIGNALS: readonly ExpensiveSignalName[] = ['squeeze', 'cross_encoder', 'cross_regression', 'squeeze_cross', 'patch_texture'];
/** Canonical order, used for display, serialisation and deterministic sums. */
export const DETECTION_SIGNALS: readonly DetectionSignalName[] = [...CHEAP_SIGNALS, ...EXPENSIVE_SIGNALS];

export type TierMode = 'always' | 'when_inconclusive' | 'off';
export const TIER_MODES: readonly TierMode[] = ['always', 'when_inconclusive', 'off'];

export function isExpensive(name: string): name is ExpensiveSignalName {
  return (EXPENSIVE_SIGNALS as readonly string[]).includes(name);
}

export function isDetectionSignal(name: string): name is DetectionSignalName {
  return (DETECTION_SIGNALS as readonly string[]).includes(name);
}
