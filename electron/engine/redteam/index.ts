// The red team inside the product: gradient-free attacks on the active encoder (forward passes
// only, so they work on any ONNX encoder, CLIP included) and the benign controls they are
// judged against. runRedteam is the job the workbench and `parallax redteam` run; the
// pixel-level attacks are exported for evaluations and tests.

export { ATTACK_NAMES, attackFamily, isAttackName, isTargeted, parseEps, usesEps, type AttackName } from './attacks.js';
export {
  MANIFEST_FORMAT,
  RedteamInputError,
  runRedteam,
  type RedteamError,
  type RedteamItem,
  type RedteamManifest,
  type RedteamOptions,
  type RedteamProgress,
} from './run.js';

export {
  cosine,
  cosineDistance,
  epsLevels,
  fromBytes,
  linf255,
  quantise,
  score,
  toBytes,
  type AttackResult,
  type Forward,
  type ImageSize,
  type Objective,
} from './pixels.js';
export { spsaPgd, spsaQueries, SPSA_DEFAULTS, type SpsaOptions } from './spsa.js';
export { squareAttack, SQUARE_DEFAULTS, type SquareOptions } from './square.js';
export { patchAttack, patchSide, PATCH_DEFAULTS, PATCH_PALETTES, type PatchOptions, type PatchPalette, type PatchResult, type Region } from './patch.js';
export {
  applyUniversal,
  fitUniversal,
  loadUniversalDelta,
  saveUniversalDelta,
  universalQueries,
  UNIVERSAL_DEFAULTS,
  UNIVERSAL_FORMAT,
  type UniversalDeltaFile,
  type UniversalFit,
  type UniversalOptions,
} from './universal.js';
export { INJECTIONS, typographicAttack, type TypographicOptions, type TypographicResult } from './typographic.js';
export { benignTransform, largestInnerRectangle, type BenignKind, type BenignResult } from './benign.js';
export { pSchedule, randomSearchQueries } from './random-search.js';
