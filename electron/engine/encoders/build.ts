// Install-time build of a converted model: descriptor in, `<artifact>.onnx` + `<artifact>.json` out.
//
// Re-running is cheap: if the manifest on disk was built from the same source weights, the same
// descriptor and the same converter version, and the .onnx still matches its recorded hash,
// nothing is converted. Files are written to a temporary name and renamed into place, manifest
// last, so a reader (or a second build racing this one, e.g. parallel test files) never sees a
// half-written model; both builds produce identical bytes, so whichever rename wins is correct.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';

import { CONVERTER_VERSION, ONNX_OPSET, convertKerasArtifacts, loadKerasArtifacts } from './keras-to-onnx.js';
import { canonicalJson, manifestPathFor, readModelDescriptor, readModelManifest, sha256Hex, type ModelDescriptor, type ModelManifest } from './manifest.js';
import { installedPackage } from './paths.js';

export interface BuildResult {
  status: 'built' | 'up-to-date';
  manifest: ModelManifest;
  onnxPath: string;
  manifestPath: string;
  /** Wall time of the conversion alone (0 when up to date). */
  convertMs: number;
  /** Wall time of the whole call, hashing and checks included. */
  totalMs: number;
}

export interface BuildOptions {
  /** Convert even if the outputs are up to date. */
  force?: boolean;
  /** Load the new .onnx in ONNX Runtime and check its output shape (default true). */
  verify?: boolean;
}

/** Builds the model a descriptor describes into `outDir`, unless it is already there and current. */
export async function ensureBuiltModel(descriptorPath: string, outDir: string, options: BuildOptions = {}): Promise<BuildResult> {
  const started = performance.now();
  const descriptor = readModelDescriptor(descriptorPath);
  const descriptorSha256 = sha256Hex(canonicalJson(descriptor));
  const pkg = installedPackage(descriptor.source.package);
  const artifacts = loadKerasArtifacts(
    path.join(pkg.dir, descriptor.source.model),
    descriptor.source.shards.map((s) => path.join(pkg.dir, s)),
  );
  const onnxPath = path.join(outDir, `${descriptor.artifact}.onnx`);
  const manifestPath = manifestPathFor(outDir, descriptor.artifact);

  if (!options.force) {
    const current = upToDate(manifestPath, onnxPath, artifacts.weightsSha256, descriptorSha256);
    if (current) return { status: 'up-to-date', manifest: current, onnxPath, manifestPath, convertMs: 0, totalMs: performance.now() - started };
  }

  const convertStarted = performance.now();
  const result = convertKerasArtifacts(artifacts, { ...descriptor.convert, inputName: descriptor.input.name, outputName: descriptor.output.name });
  const convertMs = performance.now() - convertStarted;
  checkAgainstDescriptor(descriptor, result.input.dims, result.output.dims);
  if (options.verify ?? true) await verifyOnnx(result.onnx, descriptor);

  const manifest: ModelManifest = {
    name: descriptor.name,
    description: descriptor.description,
    onnx: path.basename(onnxPath),
    onnxSha256: sha256Hex(result.onnx),
    onnxBytes: result.onnx.length,
    source: {
      package: descriptor.source.package,
      version: pkg.version,
      model: descriptor.source.model,
      shards: descriptor.source.shards,
      licence: descriptor.source.licence,
      weightsSha256: result.weightsSha256,
    },
    converter: {
      name: 'keras-to-onnx',
      version: CONVERTER_VERSION,
      opset: ONNX_OPSET,
      outputLayer: descriptor.convert.outputLayer,
      pool: descriptor.convert.pool,
      nodes: result.nodeCount,
      parameters: result.parameterCount,
      descriptorSha256,
    },
    input: descriptor.input,
    output: descriptor.output,
  };
  mkdirSync(outDir, { recursive: true });
  writeAtomically(onnxPath, result.onnx);
  writeAtomically(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  return { status: 'built', manifest, onnxPath, manifestPath, convertMs, totalMs: performance.now() - started };
}

/** The manifest on disk, if it matches the current inputs and its .onnx is intact. */
function upToDate(manifestPath: string, onnxPath: string, weightsSha256: string, descriptorSha256: string): ModelManifest | undefined {
  if (!existsSync(manifestPath) || !existsSync(onnxPath)) return undefined;
  let manifest: ModelManifest;
  try {
    manifest = readModelManifest(manifestPath);
  } catch {
    return undefined; // unreadable or from an older format: rebuild over it
  }
  const current =
    manifest.source.weightsSha256 === weightsSha256 &&
    manifest.converter.descriptorSha256 === descriptorSha256 &&
    manifest.converter.version === CONVERTER_VERSION &&
    sha256Hex(readFileSync(onnxPath)) === manifest.onnxSha256;
  return current ? manifest : undefined;
}

function checkAgainstDescriptor(d: ModelDescriptor, inputDims: readonly (string | number)[], outputDims: readonly (string | number)[]): void {
  const [w, h] = d.input.preprocessing.size;
  const expectIn = ['N', h, w, d.input.preprocessing.channels];
  if (inputDims.join(',') !== expectIn.join(',')) {
    throw new Error(`${d.artifact}: the model's input is [${inputDims}] but the descriptor's preprocessing gives [${expectIn}]`);
  }
  if (outputDims.join(',') !== ['N', d.output.dim].join(',')) {
    throw new Error(`${d.artifact}: the converted output is [${outputDims}] but the descriptor says dim ${d.output.dim}`);
  }
}

/** One run on a blank image: catches a graph ONNX Runtime rejects before anyone depends on it. */
async function verifyOnnx(onnx: Uint8Array, d: ModelDescriptor): Promise<void> {
  const [w, h] = d.input.preprocessing.size;
  const session = await ort.InferenceSession.create(onnx, { executionProviders: ['cpu'] });
  try {
    const input = new ort.Tensor('float32', new Float32Array(h * w * 3).fill(0.5), [1, h, w, 3]);
    const out = (await session.run({ [d.input.name]: input }))[d.output.name];
    if (!out || out.dims.join(',') !== `1,${d.output.dim}`) {
      throw new Error(`${d.artifact}: ONNX Runtime produced ${out ? `[${out.dims}]` : 'no output'} for "${d.output.name}", expected [1,${d.output.dim}]`);
    }
    const data = out.data as Float32Array;
    if (!data.every(Number.isFinite)) throw new Error(`${d.artifact}: ONNX Runtime produced non-finite features`);
  } finally {
    await session.release();
  }
}

function writeAtomically(file: string, data: Uint8Array | string): void {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new Error(`cannot write ${file}: ${(err as Error).message}`);
  }
}
