// The image geometry PaddleOCR gets from OpenCV, written out in TypeScript: bilinear resize
// (cv2.INTER_LINEAR's half-pixel mapping), connected components, convex hull, minimum-area
// rectangle (cv2.minAreaRect via rotating calipers), point-in-quadrilateral scoring, and the
// perspective crop of a quadrilateral (cv2.getPerspectiveTransform + warpPerspective with
// BORDER_REPLICATE).

export type Point = [number, number];
/** Four corners: top-left, top-right, bottom-right, bottom-left (image coordinates, y down). */
export type Quad = [Point, Point, Point, Point];

/** Interleaved 8-bit image of `channels` channels. */
export interface Raster {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

/**
 * Bilinear resize with cv2.INTER_LINEAR's pixel-centre mapping (src = (dst + 0.5)·scale − 0.5,
 * clamped); like OpenCV's, it does not antialias when shrinking.
 */
export function resizeBilinear(src: Raster, width: number, height: number): Raster {
  const { data, channels: c } = src;
  const out = new Uint8Array(width * height * c);
  const sx = src.width / width;
  const sy = src.height / height;
  const x0s = new Int32Array(width);
  const x1s = new Int32Array(width);
  const fxs = new Float32Array(width);
  for (let x = 0; x < width; x++) {
    const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), src.width - 1);
    x0s[x] = Math.floor(fx);
    x1s[x] = Math.min(x0s[x] + 1, src.width - 1);
    fxs[x] = fx - x0s[x];
  }
  for (let y = 0; y < height; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), src.height - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, src.height - 1);
    const wy = fy - y0;
    for (let x = 0; x < width; x++) {
      const wx = fxs[x];
      const a = (y0 * src.width + x0s[x]) * c;
      const b = (y0 * src.width + x1s[x]) * c;
      const d = (y1 * src.width + x0s[x]) * c;
      const e = (y1 * src.width + x1s[x]) * c;
      for (let k = 0; k < c; k++) {
        const top = data[a + k] + (data[b + k] - data[a + k]) * wx;
        const bottom = data[d + k] + (data[e + k] - data[d + k]) * wx;
        out[(y * width + x) * c + k] = Math.round(top + (bottom - top) * wy);
      }
    }
  }
  return { data: out, width, height, channels: c };
}

/**
 * 8-connected components of `mask` (non-zero = set). Returns, per component, the leftmost and
 * rightmost set pixel of every row it touches: enough for its convex hull, at a fraction of
 * the memory of the full pixel list.
 */
export function componentRowExtents(mask: Uint8Array, width: number, height: number, maxComponents: number): Point[][] {
  const label = new Int32Array(width * height);
  const out: Point[][] = [];
  const stack: number[] = [];
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || label[start]) continue;
    if (out.length >= maxComponents) break;
    const id = out.length + 1;
    const rows = new Map<number, [number, number]>();
    label[start] = id;
    stack.push(start);
    while (stack.length) {
      const p = stack.pop()!;
      const y = (p / width) | 0;
      const x = p - y * width;
      const r = rows.get(y);
      if (!r) rows.set(y, [x, x]);
      else {
        if (x < r[0]) r[0] = x;
        if (x > r[1]) r[1] = x;
      }
      for (let dy = -1; dy <= 1; dy++) {
        const ny = y + dy;
        if (ny < 0 || ny >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx;
          if (nx < 0 || nx >= width || (dx === 0 && dy === 0)) continue;
          const q = ny * width + nx;
          if (mask[q] && !label[q]) {
            label[q] = id;
            stack.push(q);
          }
        }
      }
    }
    const points: Point[] = [];
    for (const [y, [a, b]] of rows) {
      points.push([a, y]);
      if (b !== a) points.push([b, y]);
    }
    out.push(points);
  }
  return out;
}

/** Andrew's monotone chain; counter-clockwise in a y-up frame, no collinear points. */
export function convexHull(points: readonly Point[]): Point[] {
  const p = [...points].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (p.length <= 2) return p;
  const cross = (o: Point, a: Point, b: Point) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower: Point[] = [];
  for (const q of p) {
    while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], q) <= 0) lower.pop();
    lower.push(q);
  }
  const upper: Point[] = [];
  for (let i = p.length - 1; i >= 0; i--) {
    const q = p[i];
    while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], q) <= 0) upper.pop();
    upper.push(q);
  }
  return lower.slice(0, -1).concat(upper.slice(0, -1));
}

export interface RotatedRect {
  centre: Point;
  /** Side lengths along the two axes of the rectangle. */
  size: [number, number];
  /** The four corners, in order around the rectangle. */
  corners: Quad;
}

/** Minimum-area enclosing rectangle of a point set: one of its sides lies on a hull edge. */
export function minAreaRect(points: readonly Point[]): RotatedRect {
  const hull = convexHull(points);
  if (hull.length === 1) {
    const [x, y] = hull[0];
    return { centre: [x, y], size: [0, 0], corners: [[x, y], [x, y], [x, y], [x, y]] };
  }
  let best: { area: number; ux: number; uy: number; minU: number; maxU: number; minV: number; maxV: number } | null = null;
  for (let i = 0; i < hull.length; i++) {
    const a = hull[i];
    const b = hull[(i + 1) % hull.length];
    const len = Math.hypot(b[0] - a[0], b[1] - a[1]);
    if (len === 0) continue;
    const ux = (b[0] - a[0]) / len;
    const uy = (b[1] - a[1]) / len;
    let minU = Infinity;
    let maxU = -Infinity;
    let minV = Infinity;
    let maxV = -Infinity;
    for (const q of hull) {
      const u = q[0] * ux + q[1] * uy;
      const v = -q[0] * uy + q[1] * ux;
      if (u < minU) minU = u;
      if (u > maxU) maxU = u;
      if (v < minV) minV = v;
      if (v > maxV) maxV = v;
    }
    const area = (maxU - minU) * (maxV - minV);
    if (!best || area < best.area) best = { area, ux, uy, minU, maxU, minV, maxV };
  }
  const { ux, uy, minU, maxU, minV, maxV } = best!;
  const at = (u: number, v: number): Point => [u * ux - v * uy, u * uy + v * ux];
  const corners: Quad = [at(minU, minV), at(maxU, minV), at(maxU, maxV), at(minU, maxV)];
  const cu = (minU + maxU) / 2;
  const cv = (minV + maxV) / 2;
  return { centre: at(cu, cv), size: [maxU - minU, maxV - minV], corners };
}

/**
 * PaddleOCR's get_mini_boxes corner order: sort the four corners by x; of the two leftmost the
 * upper is top-left and the lower bottom-left; of the two rightmost, likewise.
 */
export function orderCorners(corners: readonly Point[]): Quad {
  const p = [...corners].sort((a, b) => a[0] - b[0]);
  const [tl, bl] = p[1][1] > p[0][1] ? [p[0], p[1]] : [p[1], p[0]];
  const [tr, br] = p[3][1] > p[2][1] ? [p[2], p[3]] : [p[3], p[2]];
  return [tl, tr, br, bl];
}

/** Mean of `map` over the pixels whose centres fall inside the (convex) quadrilateral. */
export function meanInsideQuad(map: Float32Array, width: number, height: number, quad: Quad): number {
  const xs = quad.map((p) => p[0]);
  const ys = quad.map((p) => p[1]);
  const x0 = Math.max(0, Math.floor(Math.min(...xs)));
  const x1 = Math.min(width - 1, Math.ceil(Math.max(...xs)));
  const y0 = Math.max(0, Math.floor(Math.min(...ys)));
  const y1 = Math.min(height - 1, Math.ceil(Math.max(...ys)));
  let sum = 0;
  let n = 0;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      if (insideConvex(quad, x, y)) {
        sum += map[y * width + x];
        n++;
      }
    }
  }
  return n ? sum / n : 0;
}

function insideConvex(q: Quad, x: number, y: number): boolean {
  let sign = 0;
  for (let i = 0; i < 4; i++) {
    const [ax, ay] = q[i];
    const [bx, by] = q[(i + 1) % 4];
    const c = (bx - ax) * (y - ay) - (by - ay) * (x - ax);
    // Pixels on an edge count as inside, as cv2.fillPoly draws the outline too.
    if (Math.abs(c) < 1e-9) continue;
    const s = c > 0 ? 1 : -1;
    if (sign === 0) sign = s;
    else if (s !== sign) return false;
  }
  return true;
}

/** Solves the 8-parameter homography mapping src[i] → dst[i] (cv2.getPerspectiveTransform). */
export function perspectiveTransform(src: Quad, dst: Quad): number[] {
  const A: number[][] = [];
  const b: number[] = [];
  for (let i = 0; i < 4; i++) {
    const [x, y] = src[i];
    const [u, v] = dst[i];
    A.push([x, y, 1, 0, 0, 0, -u * x, -u * y]);
    b.push(u);
    A.push([0, 0, 0, x, y, 1, -v * x, -v * y]);
    b.push(v);
  }
  // Gaussian elimination with partial pivoting on the 8×8 system.
  for (let col = 0; col < 8; col++) {
    let pivot = col;
    for (let r = col + 1; r < 8; r++) if (Math.abs(A[r][col]) > Math.abs(A[pivot][col])) pivot = r;
    [A[col], A[pivot]] = [A[pivot], A[col]];
    [b[col], b[pivot]] = [b[pivot], b[col]];
    const d = A[col][col];
    if (Math.abs(d) < 1e-12) throw new RangeError('perspective transform: degenerate quadrilateral');
    for (let r = 0; r < 8; r++) {
      if (r === col) continue;
      const f = A[r][col] / d;
      for (let k = col; k < 8; k++) A[r][k] -= f * A[col][k];
      b[r] -= f * b[col];
    }
  }
  return [...b.map((v, i) => v / A[i][i]), 1];
}

/**
 * PaddleOCR's get_rotate_crop_image: the quadrilateral warped onto an upright rectangle
 * (width = the longer of its top and bottom edges, height = the longer of its sides), border
 * pixels replicated; a crop at least 1.5 times taller than wide is turned 90° counter-clockwise
 * (vertical text becomes a line).
 */
export function cropQuad(img: Raster, quad: Quad): Raster {
  const d = (a: Point, b: Point) => Math.hypot(a[0] - b[0], a[1] - b[1]);
  const w = Math.max(1, Math.trunc(Math.max(d(quad[0], quad[1]), d(quad[2], quad[3]))));
  const h = Math.max(1, Math.trunc(Math.max(d(quad[0], quad[3]), d(quad[1], quad[2]))));
  // Inverse map: for each output pixel, where it comes from.
  const m = perspectiveTransform([[0, 0], [w, 0], [w, h], [0, h]], quad);
  const c = img.channels;
  const out = new Uint8Array(w * h * c);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const den = m[6] * x + m[7] * y + m[8];
      const sx = (m[0] * x + m[1] * y + m[2]) / den;
      const sy = (m[3] * x + m[4] * y + m[5]) / den;
      const fx = Math.min(Math.max(sx, 0), img.width - 1);
      const fy = Math.min(Math.max(sy, 0), img.height - 1);
      const x0 = Math.floor(fx);
      const y0 = Math.floor(fy);
      const x1 = Math.min(x0 + 1, img.width - 1);
      const y1 = Math.min(y0 + 1, img.height - 1);
      const wx = fx - x0;
      const wy = fy - y0;
      for (let k = 0; k < c; k++) {
        const p = (yy: number, xx: number) => img.data[(yy * img.width + xx) * c + k];
        const top = p(y0, x0) + (p(y0, x1) - p(y0, x0)) * wx;
        const bottom = p(y1, x0) + (p(y1, x1) - p(y1, x0)) * wx;
        out[(y * w + x) * c + k] = Math.round(top + (bottom - top) * wy);
      }
    }
  }
  const crop = { data: out, width: w, height: h, channels: c };
  return h / w >= 1.5 ? rotate90ccw(crop) : crop;
}

export function rotate90ccw(img: Raster): Raster {
  const { width: w, height: h, channels: c } = img;
  const out = new Uint8Array(w * h * c);
  // np.rot90: out[i][j] = in[j][w − 1 − i]; the output is h wide and w tall.
  for (let i = 0; i < w; i++) {
    for (let j = 0; j < h; j++) {
      for (let k = 0; k < c; k++) out[(i * h + j) * c + k] = img.data[(j * w + (w - 1 - i)) * c + k];
    }
  }
  return { data: out, width: h, height: w, channels: c };
}

export function rotate180(img: Raster): Raster {
  const n = img.width * img.height;
  const c = img.channels;
  const out = new Uint8Array(img.data.length);
  for (let i = 0; i < n; i++) for (let k = 0; k < c; k++) out[i * c + k] = img.data[(n - 1 - i) * c + k];
  return { ...img, data: out };
}
