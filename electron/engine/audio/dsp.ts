// Small, dependency-free signal processing: an in-place radix-2 FFT, a periodic Hann window and
// an HTK mel filterbank. Deterministic (no platform maths beyond IEEE double arithmetic and
// Math.sin/cos/log), so the same clip gives the same features on every machine.

/** In-place iterative radix-2 complex FFT; re and im have length n, a power of two. */
export function fftInPlace(re: Float64Array, im: Float64Array): void {
  const n = re.length;
  if (n !== im.length || (n & (n - 1)) !== 0 || n === 0) throw new RangeError(`fft: length must be a power of two, got ${n}`);
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      let t = re[i];
      re[i] = re[j];
      re[j] = t;
      t = im[i];
      im[i] = im[j];
      im[j] = t;
    }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = (-2 * Math.PI) / len;
    const wr = Math.cos(ang);
    const wi = Math.sin(ang);
    for (let start = 0; start < n; start += len) {
      let cr = 1;
      let ci = 0;
      const half = len >> 1;
      for (let k = 0; k < half; k++) {
        const a = start + k;
        const b = a + half;
        const xr = re[b] * cr - im[b] * ci;
        const xi = re[b] * ci + im[b] * cr;
        re[b] = re[a] - xr;
        im[b] = im[a] - xi;
        re[a] += xr;
        im[a] += xi;
        const ncr = cr * wr - ci * wi;
        ci = cr * wi + ci * wr;
        cr = ncr;
      }
    }
  }
}

/** Periodic Hann window, w[i] = 0.5 − 0.5·cos(2πi/N): the variant STFTs use (it tiles with 50% overlap). */
export function hannPeriodic(length: number): Float64Array {
  const w = new Float64Array(length);
  for (let i = 0; i < length; i++) w[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / length);
  return w;
}

export const hzToMel = (f: number): number => 2595 * Math.log10(1 + f / 700);
export const melToHz = (m: number): number => 700 * (10 ** (m / 2595) - 1);

/**
 * HTK-scale triangular filters: `bands` triangles whose corners are equally spaced on the mel
 * scale between fMin and fMax (bands + 2 corner points), evaluated at the FFT bin frequencies
 * k·sr/nFft for k = 0..nFft/2, each filter scaled to unit sum so a band's value is the mean
 * power across it (bands of different widths stay comparable). Returns bands × (nFft/2+1),
 * row-major. Throws if a filter would be empty (too many bands for the resolution).
 */
export function melFilterbank(bands: number, nFft: number, sampleRate: number, fMin: number, fMax: number): Float64Array {
  const bins = nFft / 2 + 1;
  const lo = hzToMel(fMin);
  const hi = hzToMel(fMax);
  const corners = Array.from({ length: bands + 2 }, (_, i) => melToHz(lo + ((hi - lo) * i) / (bands + 1)));
  const fb = new Float64Array(bands * bins);
  for (let m = 0; m < bands; m++) {
    const [left, centre, right] = [corners[m], corners[m + 1], corners[m + 2]];
    let sum = 0;
    for (let k = 0; k < bins; k++) {
      const f = (k * sampleRate) / nFft;
      const w = f <= left || f >= right ? 0 : f <= centre ? (f - left) / (centre - left) : (right - f) / (right - centre);
      fb[m * bins + k] = w;
      sum += w;
    }
    if (sum <= 0) throw new RangeError(`mel filterbank: band ${m} (${left.toFixed(0)}–${right.toFixed(0)} Hz) covers no FFT bin; use fewer bands or a larger FFT`);
    for (let k = 0; k < bins; k++) fb[m * bins + k] /= sum;
  }
  return fb;
}
