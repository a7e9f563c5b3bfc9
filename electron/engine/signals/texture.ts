// Patch texture: is there one small region of unnaturally fine colour texture?
//
// An adversarial patch (Brown et al. 2017) is a few percent of the image whose pixels are
// free to take any value, and the optimisers that make one (gradient or random search) fill it
// with saturated, pixel-level colour noise: nothing in a photo looks like that at the encoder's
// resolution. Camera photos keep their colour smooth at pixel scale (sensors interpolate colour,
// JPEG halves its resolution, and resizing to the encoder's input averages what is left), so
// fine texture in the colour-difference channels is rare and, where it exists, spread thinly.
// This is the cue Local Gradients Smoothing (Naseer et al., WACV 2019) uses to find patches,
// computed here as a number a baseline can calibrate:
//   C1 = R − G, C2 = B − G                       (grey levels, colour differences)
//   e  = |Immerkær's 3×3 noise mask ∗ Cₖ|        (Immerkær 1996: cancels planes and ramps,
//                                                 so edges and shading answer little)
//   raw = max over windows of mean(e)            (windows of side W/8, stride W/16)
// i.e. the colour noise of the noisiest window, in grey levels.
//
// Measured on the encoder's 224×224 inputs (863 baseline photos, 297 held-out, 247 unusual
// but legitimate images; red-team patches on the first 40 held-out ImageNet photos and on the
// next 40, and 10 development patches): baseline 99th percentile 22.4 (max 49.8), held-out max
// 19.6, unusual max 17.6; all 90 patches at 123.8 or more (median about 180). It does not see
// perturbations spread over the whole image at 8/255 in 16-pixel tiles (SPSA-PGD, universal:
// AUROC ≈ 0.5) — the other signals are for those. It reads colour only: an attacker who knows
// it paints the patch in greys (the red team's `--palette grey`: black and white leave
// C1 = C2 = 0) and is left to the other signals, which catch 0.60 of such patches at 1% FPR.
// Luminance texture separates without a margin (grey patches 98–127, baseline photos up to
// 146), so it is not added here. Images that were already resized to the
// encoder's size with a sharpening kernel (Lanczos, cubic) carry more colour texture than
// photos our linear resize shrinks (297 held-out photos as Lanczos PNGs: median 6.9, max 35.7,
// against 4.3 and 19.6), still far below any patch.
//
// Works on the encoder-input tensor, NHWC float in [0, 1], like the squeezers.

/** Bumps whenever the statistic changes: the stored feature name carries it. */
export const PATCH_TEXTURE_VERSION = 1;

/** Name under which the statistic is stored in item_features (keyed by the primary encoder). */
export const PATCH_TEXTURE_FEATURE = `patch_texture.v${PATCH_TEXTURE_VERSION}.chroma_window_max`;

/** The colour noise (grey levels) of the noisiest window of an encoder-input tensor. */
export function patchTexture(pixels: Float32Array, width: number, height: number): number {
  if (pixels.length !== width * height * 3) {
    throw new RangeError(`patchTexture: ${pixels.length} values for a ${width}×${height}×3 tensor`);
  }
  if (width < 8 || height < 8) throw new RangeError(`patchTexture: ${width}×${height} is too small (8×8 at least)`);
  const n = width * height;
  const c1 = new Float32Array(n);
  const c2 = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const g = pixels[i * 3 + 1];
    c1[i] = (pixels[i * 3] - g) * 255;
    c2[i] = (pixels[i * 3 + 2] - g) * 255;
  }
  // e(x, y) on the interior (the mask needs all eight neighbours); 0 on the one-pixel border.
  const e = new Float32Array(n);
  for (let y = 1; y < height - 1; y++) {
    for (let x = 1; x < width - 1; x++) {
      const i = y * width + x;
      e[i] = (Math.abs(immerkaer(c1, i, width)) + Math.abs(immerkaer(c2, i, width))) / 2;
    }
  }
  // Window sums from a summed-area table over the interior.
  const side = Math.max(2, Math.round(Math.min(width, height) / 8));
  const stride = Math.max(1, Math.round(side / 2));
  const sat = new Float64Array((width + 1) * (height + 1));
  for (let y = 0; y < height; y++) {
    let row = 0;
    for (let x = 0; x < width; x++) {
      row += e[y * width + x];
      sat[(y + 1) * (width + 1) + x + 1] = sat[y * (width + 1) + x + 1] + row;
    }
  }
  let best = 0;
  for (let y0 = 1; y0 + side <= height - 1; y0 += stride) {
    for (let x0 = 1; x0 + side <= width - 1; x0 += stride) {
      const x1 = x0 + side, y1 = y0 + side;
      const sum = sat[y1 * (width + 1) + x1] - sat[y0 * (width + 1) + x1] - sat[y1 * (width + 1) + x0] + sat[y0 * (width + 1) + x0];
      best = Math.max(best, sum / (side * side));
    }
  }
  return best;
}

/** Immerkær's mask [1 −2 1; −2 4 −2; 1 −2 1] at interior pixel i. */
function immerkaer(a: Float32Array, i: number, w: number): number {
  return a[i - w - 1] - 2 * a[i - w] + a[i - w + 1] - 2 * a[i - 1] + 4 * a[i] - 2 * a[i + 1] + a[i + w - 1] - 2 * a[i + w] + a[i + w + 1];
}
