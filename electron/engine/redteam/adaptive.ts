// Detector-aware (adaptive) attacks: what an attacker who knows Parallax's attack-aware
// signals would optimise. A detector evaluated only against attacks that ignore it says little
// (Carlini & Wagner 2017, "Adversarial examples are not easily detected"; Athalye et al. 2018):
// the honest question is what it costs an attacker to get past it.
//
// The attacks stay the same (SPSA-PGD, Square, universal, patch); only the forward pass they
// query changes. Instead of the primary embedding alone it returns one unit vector made of
// unit-length blocks, each scaled by a weight (then all by one factor):
//   [ f(x) | f(s_1(x))/√m … f(s_m(x))/√m | g(x) ]
// f the primary encoder, s_j the squeezers whose copies `squeeze` and `squeeze_cross` look at,
// g the cross encoder (InceptionV3, fed the 224-pixel image resized as a scan would). The
// attacks' objective is a cosine against the same construction of the clean image (untargeted)
// or of the target (targeted), and the cosine of two such vectors is the weighted mean of the
// blocks' cosines. So an untargeted attack must move the squeezed copies and the cross
// encoder's view along with the primary embedding, and a targeted one must pull all of them
// onto the target's: the transformation-consistency and cross-encoder signals then see an
// item whose views agree. (The statistical signals are not in the loop: a targeted attack
// already lands on legitimate ground.)
//
// The price is queries: each costs 1 + m primary passes and one cross-encoder pass (about 13
// MobileNetV2 passes' worth with InceptionV3 on CPU).

import type { ImageEncoder } from '../encoders/encoder.js';
import { resizeForEncoder } from '../ingest/image.js';
import { crossSqueezers, squeeze, type SqueezeParams } from '../signals/squeeze.js';
import { toBytes, type Forward, type ImageSize } from './pixels.js';

export interface AdaptiveOptions {
  /** The squeezers' parameters (the detector's own); the median/JPEG/resize ones among them run. */
  squeeze: SqueezeParams;
  /** The cross encoder, or null to leave it out of the loop. */
  secondary: ImageEncoder | null;
}

/** What the manifest records about an adaptive run. */
export function describeAdaptive(opts: AdaptiveOptions): string {
  const parts = ['primary', ...crossSqueezers(opts.squeeze).map((s) => `squeeze:${s}`)];
  if (opts.secondary) parts.push(`cross:${opts.secondary.id}`);
  return parts.join('+');
}

/** Primary passes plus cross-encoder passes one adaptive query costs. */
export function adaptiveCost(opts: AdaptiveOptions): { primary: number; secondary: number } {
  return { primary: 1 + crossSqueezers(opts.squeeze).length, secondary: opts.secondary ? 1 : 0 };
}

/** The forward pass an adaptive attack queries (see the header); `size` is the primary encoder's input. */
export function adaptiveForward(primary: ImageEncoder, size: ImageSize, opts: AdaptiveOptions): Forward {
  const squeezers = crossSqueezers(opts.squeeze);
  const m = squeezers.length;
  const copyWeight = m > 0 ? 1 / Math.sqrt(m) : 0;
  const per = size.width * size.height * 3;
  return async (pixels, n) => {
    if (pixels.length !== n * per) throw new RangeError(`adaptive forward: ${pixels.length} values for ${n} images of ${size.width}×${size.height}`);
    const batch = new Float32Array(n * (1 + m) * per);
    for (let i = 0; i < n; i++) {
      const x = pixels.subarray(i * per, (i + 1) * per);
      batch.set(x, i * (1 + m) * per);
      for (let j = 0; j < m; j++) {
        const [copy] = await squeeze(squeezers[j], x, size.width, size.height, opts.squeeze);
        batch.set(copy, (i * (1 + m) + 1 + j) * per);
      }
    }
    const views = await primary.embedPixels(batch, n * (1 + m));
    let cross: Float32Array[] = [];
    if (opts.secondary) {
      const { width, height } = opts.secondary.inputSize;
      const per2 = width * height * 3;
      const b2 = new Float32Array(n * per2);
      for (let i = 0; i < n; i++) {
        // What a scan of the written PNG feeds the cross encoder: the uint8 image, resized by ingest.
        const rgb = toBytes(pixels.subarray(i * per, (i + 1) * per));
        b2.set(await resizeForEncoder({ rgb, width: size.width, height: size.height }, width, height), i * per2);
      }
      cross = await opts.secondary.embedPixels(b2, n);
    }
    return Array.from({ length: n }, (_, i) => {
      const blocks: [Float32Array, number][] = [[views[i * (1 + m)], 1]];
      for (let j = 0; j < m; j++) blocks.push([views[i * (1 + m) + 1 + j], copyWeight]);
      if (opts.secondary) blocks.push([cross[i], 1]);
      return concatUnitBlocks(blocks);
    });
  };
}

/**
 * Each block scaled to length weight/√(Σ weight²), end to end: a unit vector (the red team's
 * cosines assume unit vectors) whose dot product with another built the same way is the
 * weight²-weighted mean of the blocks' cosines.
 */
export function concatUnitBlocks(blocks: readonly [Float32Array, number][]): Float32Array {
  const out = new Float32Array(blocks.reduce((a, [b]) => a + b.length, 0));
  const total = Math.sqrt(blocks.reduce((a, [, w]) => a + w * w, 0));
  let o = 0;
  for (const [b, w] of blocks) {
    let s = 0;
    for (let t = 0; t < b.length; t++) s += b[t] * b[t];
    const k = s > 0 && total > 0 ? w / total / Math.sqrt(s) : 0;
    for (let t = 0; t < b.length; t++) out[o + t] = b[t] * k;
    o += b.length;
  }
  return out;
}
