// Typed arrays ⇄ base64 of their little-endian bytes. Hand-written because the shared code
// runs both in Node (no atob guarantee on old versions, Buffer is Node-only) and in the
// renderer (no Buffer), and because btoa over a binary string is slow for megabyte models.

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const DECODE = (() => {
  const table = new Int16Array(128).fill(-1);
  for (let i = 0; i < ALPHABET.length; i++) table[ALPHABET.charCodeAt(i)] = i;
  return table;
})();

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

export function bytesToBase64(bytes: Uint8Array): string {
  const n = bytes.length;
  const parts: string[] = [];
  // Chunked so String.fromCharCode never sees more arguments than the engine allows.
  const CHUNK = 3 * 4096;
  const codes = new Uint16Array((CHUNK / 3) * 4);
  for (let start = 0; start < n; start += CHUNK) {
    const end = Math.min(n, start + CHUNK);
    let o = 0;
    let i = start;
    for (; i + 2 < end; i += 3) {
      const v = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
      codes[o++] = ALPHABET.charCodeAt(v >>> 18);
      codes[o++] = ALPHABET.charCodeAt((v >>> 12) & 63);
      codes[o++] = ALPHABET.charCodeAt((v >>> 6) & 63);
      codes[o++] = ALPHABET.charCodeAt(v & 63);
    }
    const rest = end - i;
    if (rest > 0) {
      const v = (bytes[i] << 16) | (rest === 2 ? bytes[i + 1] << 8 : 0);
      codes[o++] = ALPHABET.charCodeAt(v >>> 18);
      codes[o++] = ALPHABET.charCodeAt((v >>> 12) & 63);
      codes[o++] = rest === 2 ? ALPHABET.charCodeAt((v >>> 6) & 63) : 61; // '='
      codes[o++] = 61;
    }
    parts.push(String.fromCharCode.apply(null, codes.subarray(0, o) as unknown as number[]));
  }
  return parts.join('');
}

export function base64ToBytes(text: string): Uint8Array {
  const clean = text.replace(/[\s]/g, '');
  if (clean.length % 4 !== 0) throw new RangeError('base64: length is not a multiple of 4');
  const pad = clean.endsWith('==') ? 2 : clean.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((clean.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < clean.length; i += 4) {
    const a = sextet(clean, i), b = sextet(clean, i + 1);
    const c = clean.charCodeAt(i + 2) === 61 ? 0 : sextet(clean, i + 2);
    const d = clean.charCodeAt(i + 3) === 61 ? 0 : sextet(clean, i + 3);
    const v = (a << 18) | (b << 12) | (c << 6) | d;
    if (o < out.length) out[o++] = v >>> 16;
    if (o < out.length) out[o++] = (v >>> 8) & 255;
    if (o < out.length) out[o++] = v & 255;
  }
  return out;
}

function sextet(text: string, i: number): number {
  const code = text.charCodeAt(i);
  const v = code < 128 ? DECODE[code] : -1;
  if (v < 0) throw new RangeError(`base64: invalid character at ${i}`);
  return v;
}

type Typed = Float32Array | Float64Array | Int32Array;

function toLittleEndianBytes(arr: Typed, width: number): Uint8Array {
  const bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
  if (LITTLE_ENDIAN) return bytes;
  const swapped = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += width) {
    for (let b = 0; b < width; b++) swapped[i + b] = bytes[i + width - 1 - b];
  }
  return swapped;
}

function fromLittleEndianBytes(bytes: Uint8Array, width: number, what: string): ArrayBuffer {
  if (bytes.length % width !== 0) throw new RangeError(`base64: ${bytes.length} bytes is not a whole number of ${what}`);
  // A fresh, aligned copy: the decoded bytes are ours, so copying is only needed on big-endian hosts.
  const out = new Uint8Array(bytes.length);
  if (LITTLE_ENDIAN) out.set(bytes);
  else {
    for (let i = 0; i < bytes.length; i += width) {
      for (let b = 0; b < width; b++) out[i + b] = bytes[i + width - 1 - b];
    }
  }
  return out.buffer;
}

export function float32ToBase64(arr: ArrayLike<number>): string {
  const typed = arr instanceof Float32Array ? arr : Float32Array.from(arr);
  return bytesToBase64(toLittleEndianBytes(typed, 4));
}

export function base64ToFloat32(text: string): Float32Array {
  return new Float32Array(fromLittleEndianBytes(base64ToBytes(text), 4, 'float32 values'));
}

export function float64ToBase64(arr: ArrayLike<number>): string {
  const typed = arr instanceof Float64Array ? arr : Float64Array.from(arr);
  return bytesToBase64(toLittleEndianBytes(typed, 8));
}

export function base64ToFloat64(text: string): Float64Array {
  return new Float64Array(fromLittleEndianBytes(base64ToBytes(text), 8, 'float64 values'));
}

export function int32ToBase64(arr: ArrayLike<number>): string {
  const typed = arr instanceof Int32Array ? arr : Int32Array.from(arr);
  return bytesToBase64(toLittleEndianBytes(typed, 4));
}

export function base64ToInt32(text: string): Int32Array {
  return new Int32Array(fromLittleEndianBytes(base64ToBytes(text), 4, 'int32 values'));
}
