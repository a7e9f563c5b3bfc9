// Base64 columns of the map response into typed arrays.

export function base64Bytes(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function f32(b64: string): Float32Array {
  const b = base64Bytes(b64);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

export function f64(b64: string): Float64Array {
  const b = base64Bytes(b64);
  return new Float64Array(b.buffer, b.byteOffset, b.byteLength / 8);
}

export function i32(b64: string): Int32Array {
  const b = base64Bytes(b64);
  return new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}
