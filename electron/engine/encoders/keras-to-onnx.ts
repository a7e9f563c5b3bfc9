// Keras (TensorFlow.js layers format) → ONNX converter for feed-forward CNN backbones.
//
// Runs at install time (scripts/build-models.ts), so the app ships one inference runtime
// (onnxruntime-node) instead of also carrying TensorFlow.js. The converter walks the Keras
// functional topology layer by layer, from the input to a chosen layer (e.g. MobileNetV2's
// `out_relu`), and emits an NCHW ONNX graph:
//
//   pixels [N,H,W,C] (NHWC, as Keras expects) → Transpose → ...layers... → GlobalAveragePool → Flatten
//
// Two graph rewrites keep the result lean without changing its maths:
//  - BatchNormalization that directly follows a convolution is folded into that convolution's
//    weights and bias (inference-mode BN is a per-channel affine map);
//  - ZeroPadding2D that only feeds a 'valid' convolution becomes that convolution's `pads`.
// Anything else is converted node for node. Each Keras layer class is one handler in HANDLERS;
// MobileNetV2 needs InputLayer, ZeroPadding2D, Conv2D, DepthwiseConv2D, BatchNormalization,
// ReLU and Add. Activation, Concatenate, Max/AveragePooling2D, GlobalAveragePooling2D and
// Dropout are there for other backbones of the same family (e.g. InceptionV3).

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { attr, encodeOnnxModel, type OnnxAttribute, type OnnxNode, type OnnxTensor } from './onnx-proto.js';

/** Bump when the emitted graph for the same source would change; build caches key on it. */
export const CONVERTER_VERSION = 1;
export const ONNX_OPSET = 13;
const ONNX_IR_VERSION = 8;

// ---------------------------------------------------------------------------------------------
// Source artifacts (TensorFlow.js layers model: topology + weights manifest + weight shards)

export interface KerasLayer {
  name: string;
  class_name: string;
  config: Record<string, unknown>;
  /** Keras 2.x format: one entry per call of the layer; each lists [layer, nodeIndex, tensorIndex, kwargs]. */
  inbound_nodes: [string, number, number, unknown?][][];
}

export interface KerasModelConfig {
  class_name: string;
  config: { name?: string; layers: KerasLayer[]; input_layers: unknown; output_layers: unknown };
}

/**
 * A Keras model topology as TensorFlow.js stores it: either a Keras `model.to_json()` export
 * (`{ keras_version, backend, model_config: { class_name, config }, training_config }`, as nsfwjs
 * ships) or the bare model config (`{ class_name, config, keras_version }`, as tfjs's own
 * `model.save()` writes). TensorFlow.js accepts both, so do we.
 */
export interface KerasModelTopology {
  keras_version?: string;
  backend?: string;
  model_config?: KerasModelConfig;
  class_name?: string;
  config?: KerasModelConfig['config'];
  [key: string]: unknown;
}

export function modelConfigOf(topology: KerasModelTopology): KerasModelConfig {
  if (topology.model_config) return topology.model_config;
  if (topology.class_name && topology.config) return { class_name: topology.class_name, config: topology.config };
  throw new Error('the model topology has neither model_config nor class_name + config');
}

export interface WeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { min?: number; scale?: number; dtype: string };
}

export interface WeightsManifestGroup {
  paths: string[];
  weights: WeightSpec[];
}

export interface KerasArtifacts {
  modelTopology: KerasModelTopology;
  weightsManifest: WeightsManifestGroup[];
  /** All weight specs, in manifest order (groups concatenated), as TensorFlow.js reads them. */
  weightSpecs: WeightSpec[];
  /** All shard bytes, concatenated in manifest order. */
  weightData: Uint8Array;
  /** sha256 (hex) of weightData: identifies the source weights whatever container they came in. */
  weightsSha256: string;
}

const requireFromHere = createRequire(import.meta.url);

/**
 * Reads a TensorFlow.js layers model from disk. Two containers are understood:
 *  - the standard `model.json` + binary shard files;
 *  - nsfwjs's browserified modules (`model.min.js` exporting `{ modelTopology, weightsManifest }`,
 *    shards `*.min.js` exporting a base64 string), which are CommonJS and loaded with require().
 * `shardPaths` must follow the manifest's path order; each must be named after its manifest path
 * so that a misordered list fails here rather than producing a silently wrong model.
 */
export function loadKerasArtifacts(modelJsonPath: string, shardPaths: readonly string[]): KerasArtifacts {
  const model = readModelContainer(modelJsonPath);
  const manifestPaths = model.weightsManifest.flatMap((g) => g.paths);
  if (manifestPaths.length !== shardPaths.length) {
    throw new Error(`${modelJsonPath}: the weights manifest lists ${manifestPaths.length} shard(s) (${manifestPaths.join(', ')}) but ${shardPaths.length} were given`);
  }
  const shards = shardPaths.map((p, i) => {
    const expected = path.basename(manifestPaths[i]);
    if (!path.basename(p).startsWith(expected)) {
      throw new Error(`shard ${i + 1} should be "${expected}" (manifest order) but got ${p}`);
    }
    return readShard(p);
  });
  const weightData = concatBytes(shards);
  const weightSpecs = model.weightsManifest.flatMap((g) => g.weights);
  return {
    modelTopology: model.modelTopology,
    weightsManifest: model.weightsManifest,
    weightSpecs,
    weightData,
    weightsSha256: createHash('sha256').update(weightData).digest('hex'),
  };
}

function readModelContainer(file: string): { modelTopology: KerasModelTopology; weightsManifest: WeightsManifestGroup[] } {
  let raw: unknown;
  try {
    raw = file.endsWith('.js') ? requireFromHere(path.resolve(file)) : JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read Keras model ${file}: ${(err as Error).message}`);
  }
  const m = raw as { modelTopology?: KerasModelTopology; weightsManifest?: WeightsManifestGroup[] };
  if (!m?.modelTopology || !Array.isArray((m.modelTopology.model_config ?? m.modelTopology).config?.layers) || !Array.isArray(m.weightsManifest)) {
    throw new Error(`${file} is not a TensorFlow.js layers model (expected modelTopology with a layer list, and weightsManifest)`);
  }
  return { modelTopology: m.modelTopology, weightsManifest: m.weightsManifest };
}

function readShard(file: string): Uint8Array {
  if (!file.endsWith('.js')) return new Uint8Array(readFileSync(file));
  const content: unknown = requireFromHere(path.resolve(file));
  if (typeof content !== 'string') throw new Error(`weight shard ${file} does not export a base64 string`);
  return new Uint8Array(Buffer.from(content, 'base64'));
}

function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function bytesPerElement(spec: WeightSpec): number {
  const q = spec.quantization;
  if (q) {
    if (q.dtype === 'uint8') return 1;
    if (q.dtype === 'uint16') return 2;
    throw new Error(`weight "${spec.name}": quantisation dtype ${q.dtype} is not supported (uint8, uint16 are)`);
  }
  if (spec.dtype === 'float32') return 4;
  throw new Error(`weight "${spec.name}": dtype ${spec.dtype} is not supported (float32 or uint8/uint16-quantised float32 are)`);
}

export interface DecodedWeight {
  shape: number[];
  values: Float32Array;
}

/**
 * Decodes (and dequantises) every weight. Quantised weights become `q * scale + min`, computed
 * exactly as TensorFlow.js does, so the converted model sees the same float32 values as the
 * original running in TensorFlow.js.
 */
export function decodeWeights(specs: readonly WeightSpec[], data: Uint8Array): Map<string, DecodedWeight> {
  const out = new Map<string, DecodedWeight>();
  let offset = 0;
  for (const spec of specs) {
    const count = spec.shape.reduce((a, b) => a * b, 1);
    const q = spec.quantization;
    const bytes = count * bytesPerElement(spec);
    if (offset + bytes > data.length) {
      throw new Error(`weight "${spec.name}" runs past the end of the shard data (${offset + bytes} > ${data.length} bytes)`);
    }
    const slice = data.slice(offset, offset + bytes); // a copy: aligned, and independent of the shard
    let values: Float32Array;
    if (q) {
      if (typeof q.min !== 'number' || typeof q.scale !== 'number') {
        throw new Error(`weight "${spec.name}": quantisation lacks min/scale`);
      }
      const quantised = q.dtype === 'uint8' ? slice : new Uint16Array(slice.buffer);
      values = new Float32Array(count);
      for (let i = 0; i < count; i++) values[i] = quantised[i] * q.scale + q.min;
    } else {
      values = new Float32Array(slice.buffer);
    }
    offset += bytes;
    out.set(spec.name, { shape: spec.shape, values });
  }
  if (offset !== data.length) {
    throw new Error(`weights manifest accounts for ${offset} bytes but the shards hold ${data.length}`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Conversion

export interface ConvertOptions {
  /** Keras layer whose output is the feature map to export (e.g. 'out_relu'). */
  outputLayer: string;
  /** 'global_avg': mean over H,W → [N,C]. 'none': the layer's output as-is (feature maps back in NHWC). */
  pool: 'global_avg' | 'none';
  /** Graph input name (default 'pixels'). */
  inputName?: string;
  /** Graph output name (default 'features'). */
  outputName?: string;
}

/** What happened to one Keras layer. */
export interface ConsumedLayer {
  name: string;
  className: string;
  /** The ONNX op(s) emitted, or how the layer was absorbed (e.g. 'folded into Conv1'). */
  emitted: string;
}

export interface ConversionResult {
  onnx: Uint8Array;
  /** sha256 (hex) of the source weight bytes. */
  weightsSha256: string;
  /** Every Keras layer on the path to outputLayer, in emission order. */
  layers: ConsumedLayer[];
  input: { name: string; dims: ['N', number, number, number] };
  output: { name: string; dims: ['N', ...number[]] };
  nodeCount: number;
  parameterCount: number;
}

/** Converts a TensorFlow.js layers model on disk (see loadKerasArtifacts for the accepted forms). */
export function convertKerasModel(modelJsonPath: string, shardPaths: readonly string[], options: ConvertOptions): ConversionResult {
  return convertKerasArtifacts(loadKerasArtifacts(modelJsonPath, shardPaths), options);
}

/** Converts already-loaded artifacts. */
export function convertKerasArtifacts(artifacts: KerasArtifacts, options: ConvertOptions): ConversionResult {
  const weights = decodeWeights(artifacts.weightSpecs, artifacts.weightData);
  const modelConfig = modelConfigOf(artifacts.modelTopology);
  const ctx = new ConversionContext(modelConfig.config.layers, weights, options);
  const converted = ctx.run();
  const modelName = modelConfig.config.name ?? 'model';
  const onnx = encodeOnnxModel({
    irVersion: ONNX_IR_VERSION,
    opsetImports: [{ domain: '', version: ONNX_OPSET }],
    producerName: 'parallax-keras-to-onnx',
    producerVersion: String(CONVERTER_VERSION),
    docString: `Keras ${artifacts.modelTopology.keras_version ?? '?'} model "${modelName}" up to layer "${options.outputLayer}", pool=${options.pool}`,
    metadata: { source_weights_sha256: artifacts.weightsSha256, output_layer: options.outputLayer, pool: options.pool },
    graph: {
      name: `${modelName}_to_${options.outputLayer}`,
      nodes: ctx.nodes,
      initializers: ctx.initializers,
      inputs: [{ name: converted.input.name, elemType: 'float32', dims: converted.input.dims }],
      outputs: [{ name: converted.output.name, elemType: 'float32', dims: converted.output.dims }],
    },
  });
  return {
    onnx,
    weightsSha256: artifacts.weightsSha256,
    layers: ctx.consumed,
    input: converted.input,
    output: converted.output,
    nodeCount: ctx.nodes.length,
    parameterCount: ctx.initializers.reduce((n, t) => n + t.data.length, 0),
  };
}

/** A tensor flowing through the ONNX graph; `shape` excludes the batch dim ([C,H,W] for feature maps). */
interface Value {
  name: string;
  shape: number[];
}

interface Pads {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

type LayerHandler = (ctx: ConversionContext, layer: KerasLayer, inputs: Value[]) => Value;

const CONV_CLASSES = new Set(['Conv2D', 'DepthwiseConv2D']);

class ConversionContext {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  readonly consumed: ConsumedLayer[] = [];

  private readonly byName = new Map<string, KerasLayer>();
  private readonly values = new Map<string, Value>();
  private readonly usedNames = new Set<string>();
  private readonly usedNodeNames = new Set<string>();
  private readonly constCache = new Map<string, string>();
  /** conv layer → BatchNormalization folded into it. */
  private readonly bnFor = new Map<string, KerasLayer>();
  /** conv layer → ZeroPadding2D absorbed into its pads. */
  private readonly padFor = new Map<string, KerasLayer>();
  /** absorbed layer → the layer that absorbed it. */
  private readonly absorbedBy = new Map<string, string>();

  constructor(
    private readonly layers: readonly KerasLayer[],
    private readonly weights: Map<string, DecodedWeight>,
    private readonly options: ConvertOptions,
  ) {
    for (const l of layers) this.byName.set(l.name, l);
  }

  run(): { input: ConversionResult['input']; output: ConversionResult['output'] } {
    const target = this.byName.get(this.options.outputLayer);
    if (!target) {
      const sample = this.layers.slice(-5).map((l) => l.name).join(', ');
      throw new Error(`no layer named "${this.options.outputLayer}" in the model (${this.layers.length} layers; the last are ${sample})`);
    }
    const needed = this.ancestors(target);
    this.planFusions(needed);

    let input: ConversionResult['input'] | undefined;
    for (const layer of this.layers) {
      if (!needed.has(layer.name)) continue;
      if (this.absorbedBy.has(layer.name)) {
        // Emitted by the layer that absorbed it (pads before, BN after); recorded for the layer list.
        this.consumed.push({ name: layer.name, className: layer.class_name, emitted: `folded into ${this.absorbedBy.get(layer.name)}` });
        continue;
      }
      if (layer.class_name === 'InputLayer') {
        const { value, spec } = this.emitInput(layer);
        input = spec;
        this.values.set(layer.name, value);
        this.consumed.push({ name: layer.name, className: layer.class_name, emitted: 'graph input + Transpose(NHWC→NCHW)' });
        continue;
      }
      const handler = HANDLERS[layer.class_name];
      if (!handler) {
        throw new Error(`layer "${layer.name}": Keras layer class ${layer.class_name} is not supported by the converter (supported: InputLayer, ${Object.keys(HANDLERS).join(', ')})`);
      }
      const before = this.nodes.length;
      const out = handler(this, layer, this.inputsOf(layer));
      this.values.set(layer.name, out);
      // A folded BN's output is the conv's output: later layers that read the BN find it here.
      const bn = this.bnFor.get(layer.name);
      if (bn) this.values.set(bn.name, out);
      const ops = this.nodes.slice(before).map((n) => n.opType);
      this.consumed.push({ name: layer.name, className: layer.class_name, emitted: ops.length ? ops.join('+') : 'identity' });
    }
    if (!input) throw new Error(`layer "${target.name}" does not depend on an InputLayer`);
    return { input, output: this.emitOutput(this.value(target.name)) };
  }

  // --- topology -------------------------------------------------------------------------------

  inboundNames(layer: KerasLayer): string[] {
    if (layer.inbound_nodes.length === 0) return [];
    if (layer.inbound_nodes.length > 1) {
      throw new Error(`layer "${layer.name}" is called ${layer.inbound_nodes.length} times (shared layers are not supported)`);
    }
    return layer.inbound_nodes[0].map(([name, nodeIndex, tensorIndex]) => {
      if (nodeIndex !== 0 || tensorIndex !== 0) {
        throw new Error(`layer "${layer.name}" reads output ${nodeIndex}/${tensorIndex} of "${name}" (only single-output layers are supported)`);
      }
      return name;
    });
  }

  private ancestors(target: KerasLayer): Set<string> {
    const seen = new Set<string>();
    const stack = [target.name];
    while (stack.length) {
      const name = stack.pop()!;
      if (seen.has(name)) continue;
      const layer = this.byName.get(name);
      if (!layer) throw new Error(`the topology references a layer "${name}" that it does not define`);
      seen.add(name);
      stack.push(...this.inboundNames(layer));
    }
    return seen;
  }

  private planFusions(needed: Set<string>): void {
    const consumers = new Map<string, KerasLayer[]>();
    for (const name of needed) {
      const layer = this.byName.get(name)!;
      for (const src of this.inboundNames(layer)) consumers.set(src, [...(consumers.get(src) ?? []), layer]);
    }
    // Only a value no one else reads may disappear into a neighbour, and never the exported one.
    const soleConsumer = (name: string): KerasLayer | undefined => {
      const c = consumers.get(name);
      return name !== this.options.outputLayer && c?.length === 1 ? c[0] : undefined;
    };
    for (const name of needed) {
      const layer = this.byName.get(name)!;
      const next = soleConsumer(name);
      if (!next) continue;
      if (CONV_CLASSES.has(layer.class_name) && next.class_name === 'BatchNormalization' && (layer.config.activation ?? 'linear') === 'linear') {
        this.bnFor.set(layer.name, next);
        this.absorbedBy.set(next.name, layer.name);
      }
      if (layer.class_name === 'ZeroPadding2D' && CONV_CLASSES.has(next.class_name) && next.config.padding === 'valid') {
        this.padFor.set(next.name, layer);
        this.absorbedBy.set(layer.name, next.name);
      }
    }
  }

  private inputsOf(layer: KerasLayer): Value[] {
    return this.inboundNames(layer).map((name) => {
      // An absorbed ZeroPadding2D has no value of its own: its consumer reads the padding's input.
      if (this.padFor.get(layer.name)?.name === name) return this.value(this.inboundNames(this.byName.get(name)!)[0]);
      return this.value(name);
    });
  }

  private value(name: string): Value {
    const v = this.values.get(name);
    if (!v) throw new Error(`layer "${name}" is used before it is defined (the topology is not in topological order)`);
    return v;
  }

  foldedBatchNorm(layer: KerasLayer): KerasLayer | undefined {
    return this.bnFor.get(layer.name);
  }

  absorbedPadding(layer: KerasLayer): Pads | undefined {
    const zp = this.padFor.get(layer.name);
    return zp ? zeroPadding(zp) : undefined;
  }

  // --- graph building ---------------------------------------------------------------------------

  /** A value name not used yet, derived from a Keras name ('block_1_add', 'block_1_add_1', ...). */
  uniqueName(hint: string): string {
    return claim(this.usedNames, hint);
  }

  /** Appends a node with one output and returns the output's name. */
  node(opType: string, layerName: string, inputs: string[], attributes?: Record<string, OnnxAttribute>, outputName?: string): string {
    const output = outputName ?? this.uniqueName(layerName);
    if (outputName) this.usedNames.add(outputName);
    this.nodes.push({ opType, name: claim(this.usedNodeNames, `${layerName}/${opType}`), inputs, outputs: [output], attributes });
    return output;
  }

  floatTensor(nameHint: string, dims: number[], data: Float32Array): string {
    const name = this.uniqueName(nameHint);
    this.initializers.push({ name, elemType: 'float32', dims, data });
    return name;
  }

  int64Tensor(nameHint: string, dims: number[], data: number[]): string {
    const name = this.uniqueName(nameHint);
    this.initializers.push({ name, elemType: 'int64', dims, data: BigInt64Array.from(data.map(BigInt)) });
    return name;
  }

  /** A shared float32 scalar initializer (e.g. Clip bounds). */
  scalar(value: number): string {
    const key = `f32:${value}`;
    let name = this.constCache.get(key);
    if (!name) {
      name = this.floatTensor(`const_${String(value).replace(/[^0-9a-z]/gi, '_')}`, [], new Float32Array([value]));
      this.constCache.set(key, name);
    }
    return name;
  }

  weight(layer: KerasLayer, param: string, expectedShape?: number[]): Float32Array {
    const key = `${layer.name}/${param}`;
    const w = this.weights.get(key);
    if (!w) throw new Error(`layer "${layer.name}" (${layer.class_name}): weight "${key}" is missing from the weights manifest`);
    if (expectedShape && (w.shape.length !== expectedShape.length || w.shape.some((d, i) => d !== expectedShape[i]))) {
      throw new Error(`layer "${layer.name}": weight "${key}" has shape [${w.shape.join(',')}], expected [${expectedShape.join(',')}]`);
    }
    return w.values;
  }

  private emitInput(layer: KerasLayer): { value: Value; spec: ConversionResult['input'] } {
    const shape = layer.config.batch_input_shape as (number | null)[] | undefined;
    if (!Array.isArray(shape) || shape.length !== 4 || shape.slice(1).some((d) => typeof d !== 'number')) {
      throw new Error(`input layer "${layer.name}": batch_input_shape ${JSON.stringify(shape)} is not [batch, H, W, C] with fixed H, W, C`);
    }
    if (layer.config.dtype !== undefined && layer.config.dtype !== 'float32') {
      throw new Error(`input layer "${layer.name}": dtype ${String(layer.config.dtype)} is not float32`);
    }
    const [, h, w, c] = shape as [null, number, number, number];
    const name = this.options.inputName ?? 'pixels';
    this.usedNames.add(name);
    // Keras is channels_last; ONNX Conv is NCHW. One transpose here keeps the public input NHWC.
    const nchw = this.node('Transpose', 'input_to_nchw', [name], { perm: attr.ints([0, 3, 1, 2]) });
    return { value: { name: nchw, shape: [c, h, w] }, spec: { name, dims: ['N', h, w, c] } };
  }

  private emitOutput(v: Value): ConversionResult['output'] {
    const name = this.options.outputName ?? 'features';
    if (this.options.pool === 'global_avg') {
      if (v.shape.length !== 3) throw new Error(`pool 'global_avg' needs a feature map, but "${this.options.outputLayer}" is [${v.shape.join(',')}]`);
      const pooled = this.node('GlobalAveragePool', 'pool', [v.name]);
      this.node('Flatten', 'pool', [pooled], { axis: attr.int(1) }, name);
      return { name, dims: ['N', v.shape[0]] };
    }
    if (v.shape.length === 3) {
      this.node('Transpose', 'output_to_nhwc', [v.name], { perm: attr.ints([0, 2, 3, 1]) }, name);
      return { name, dims: ['N', v.shape[1], v.shape[2], v.shape[0]] };
    }
    this.node('Identity', 'output', [v.name], undefined, name);
    return { name, dims: ['N', ...v.shape] };
  }
}

function claim(used: Set<string>, hint: string): string {
  let name = hint;
  for (let i = 1; used.has(name); i++) name = `${hint}_${i}`;
  used.add(name);
  return name;
}

// ---------------------------------------------------------------------------------------------
// Layer handlers

function pair(v: unknown, what: string, layer: KerasLayer): [number, number] {
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number')) return [v[0], v[1]];
  throw new Error(`layer "${layer.name}": ${what} ${JSON.stringify(v)} is not an int or a pair of ints`);
}

function requireChannelsLast(layer: KerasLayer): void {
  const fmt = layer.config.data_format;
  if (fmt !== undefined && fmt !== 'channels_last') {
    throw new Error(`layer "${layer.name}": data_format ${String(fmt)} is not supported (channels_last is)`);
  }
}

function requireFeatureMap(layer: KerasLayer, v: Value): [number, number, number] {
  if (v.shape.length !== 3) throw new Error(`layer "${layer.name}" needs a [H,W,C] feature map but its input is [${v.shape.join(',')}]`);
  return v.shape as [number, number, number];
}

/** ZeroPadding2D's `padding` in any of Keras's three spellings → explicit per-side pads. */
function zeroPadding(layer: KerasLayer): Pads {
  requireChannelsLast(layer);
  const p = layer.config.padding;
  if (typeof p === 'number') return { top: p, bottom: p, left: p, right: p };
  if (Array.isArray(p) && p.length === 2) {
    const [h, w] = p as unknown[];
    if (typeof h === 'number' && typeof w === 'number') return { top: h, bottom: h, left: w, right: w };
    if (Array.isArray(h) && Array.isArray(w)) return { top: h[0], bottom: h[1], left: w[0], right: w[1] };
  }
  throw new Error(`layer "${layer.name}": padding ${JSON.stringify(p)} is not a ZeroPadding2D padding spec`);
}

/**
 * Pads and output size of a window op along one axis. 'same' follows TensorFlow: output
 * ceil(in/stride), and an odd total pad puts the extra row/column at the end.
 */
function windowAxis(inSize: number, k: number, stride: number, dilation: number, padding: string, extra: [number, number], layer: KerasLayer): { before: number; after: number; out: number } {
  const span = (k - 1) * dilation + 1;
  let [before, after] = extra;
  if (padding === 'same') {
    const out = Math.ceil((inSize + before + after) / stride);
    const total = Math.max((out - 1) * stride + span - (inSize + before + after), 0);
    before += Math.floor(total / 2);
    after += total - Math.floor(total / 2);
  } else if (padding !== 'valid') {
    throw new Error(`layer "${layer.name}": padding '${padding}' is not supported ('valid' and 'same' are)`);
  }
  const out = Math.floor((inSize + before + after - span) / stride) + 1;
  if (out < 1) throw new Error(`layer "${layer.name}": a ${k}-wide window does not fit an input of ${inSize}`);
  return { before, after, out };
}

function windowGeometry(layer: KerasLayer, x: Value, kernel: [number, number], strides: [number, number], dilation: [number, number], extra?: Pads) {
  const [, h, w] = requireFeatureMap(layer, x);
  const padding = String(layer.config.padding ?? 'valid');
  const ax = windowAxis(h, kernel[0], strides[0], dilation[0], padding, [extra?.top ?? 0, extra?.bottom ?? 0], layer);
  const ay = windowAxis(w, kernel[1], strides[1], dilation[1], padding, [extra?.left ?? 0, extra?.right ?? 0], layer);
  return { pads: [ax.before, ay.before, ax.after, ay.after], outH: ax.out, outW: ay.out };
}

/** Emits the Keras `activation` of a layer (or an Activation layer) after `v`. */
function emitActivation(ctx: ConversionContext, layer: KerasLayer, v: Value, activation: string, suffix = ''): Value {
  const name = layer.name + suffix;
  switch (activation) {
    case 'linear':
      return v;
    case 'relu':
      return { name: ctx.node('Relu', name, [v.name]), shape: v.shape };
    case 'relu6':
      return { name: ctx.node('Clip', name, [v.name, ctx.scalar(0), ctx.scalar(6)]), shape: v.shape };
    case 'sigmoid':
      return { name: ctx.node('Sigmoid', name, [v.name]), shape: v.shape };
    case 'tanh':
      return { name: ctx.node('Tanh', name, [v.name]), shape: v.shape };
    case 'softmax':
      // Channels are axis 1 both for NCHW maps and for [N,C] vectors.
      return { name: ctx.node('Softmax', name, [v.name], { axis: attr.int(1) }), shape: v.shape };
    default:
      throw new Error(`layer "${layer.name}": activation '${activation}' is not supported (linear, relu, relu6, sigmoid, tanh, softmax are)`);
  }
}

/** Per-channel inference-mode BatchNormalization as y = x * scale + shift. */
function batchNormAffine(ctx: ConversionContext, bn: KerasLayer, channels: number): { scale: Float64Array; shift: Float64Array } {
  const axis = bn.config.axis;
  if (axis !== -1 && axis !== 3 && !(Array.isArray(axis) && axis.length === 1 && (axis[0] === -1 || axis[0] === 3))) {
    throw new Error(`layer "${bn.name}": BatchNormalization over axis ${JSON.stringify(axis)} is not supported (the channel axis is)`);
  }
  const eps = typeof bn.config.epsilon === 'number' ? bn.config.epsilon : 1e-3;
  const shape = [channels];
  const gamma = bn.config.scale === false ? undefined : ctx.weight(bn, 'gamma', shape);
  const beta = bn.config.center === false ? undefined : ctx.weight(bn, 'beta', shape);
  const mean = ctx.weight(bn, 'moving_mean', shape);
  const variance = ctx.weight(bn, 'moving_variance', shape);
  const scale = new Float64Array(channels);
  const shift = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    scale[c] = (gamma ? gamma[c] : 1) / Math.sqrt(variance[c] + eps);
    shift[c] = (beta ? beta[c] : 0) - mean[c] * scale[c];
  }
  return { scale, shift };
}

/** Conv2D and DepthwiseConv2D, with any absorbed ZeroPadding2D and folded BatchNormalization. */
const convHandler: LayerHandler = (ctx, layer, [x]) => {
  requireChannelsLast(layer);
  const depthwise = layer.class_name === 'DepthwiseConv2D';
  const [cin] = requireFeatureMap(layer, x);
  const [kh, kw] = pair(layer.config.kernel_size, 'kernel_size', layer);
  const strides = pair(layer.config.strides ?? 1, 'strides', layer);
  const dilation = pair(layer.config.dilation_rate ?? 1, 'dilation_rate', layer);
  const multiplier = depthwise ? Number(layer.config.depth_multiplier ?? 1) : 1;
  const cout = depthwise ? cin * multiplier : Number(layer.config.filters);

  // Keras kernels are [kh, kw, in, out] (depthwise: [kh, kw, in, multiplier]); ONNX wants
  // [out, in/group, kh, kw]. For depthwise, ONNX output channel c*multiplier + j reads input
  // channel c, which is exactly Keras's kernel[:, :, c, j].
  const kernel = depthwise ? ctx.weight(layer, 'depthwise_kernel', [kh, kw, cin, multiplier]) : ctx.weight(layer, 'kernel', [kh, kw, cin, cout]);
  const inPerGroup = depthwise ? 1 : cin;
  const lastDim = depthwise ? multiplier : cout;
  const w = new Float64Array(cout * inPerGroup * kh * kw);
  for (let y = 0; y < kh; y++) {
    for (let xk = 0; xk < kw; xk++) {
      for (let i = 0; i < cin; i++) {
        for (let j = 0; j < lastDim; j++) {
          const src = kernel[((y * kw + xk) * cin + i) * lastDim + j];
          const o = depthwise ? i * multiplier + j : j;
          const ig = depthwise ? 0 : i;
          w[((o * inPerGroup + ig) * kh + y) * kw + xk] = src;
        }
      }
    }
  }
  const bias = new Float64Array(cout);
  if (layer.config.use_bias) ctx.weight(layer, 'bias', [cout]).forEach((b, o) => (bias[o] = b));

  // Fold BN: bn(conv(x) + b) = conv(x) * s + (b - mean) * s + beta, with s per output channel.
  const bn = ctx.foldedBatchNorm(layer);
  if (bn) {
    const { scale, shift } = batchNormAffine(ctx, bn, cout);
    const perOut = inPerGroup * kh * kw;
    for (let o = 0; o < cout; o++) {
      for (let k = 0; k < perOut; k++) w[o * perOut + k] *= scale[o];
      bias[o] = bias[o] * scale[o] + shift[o];
    }
  }
  const geom = windowGeometry(layer, x, [kh, kw], strides, dilation, ctx.absorbedPadding(layer));
  const inputs = [x.name, ctx.floatTensor(`${layer.name}/kernel`, [cout, inPerGroup, kh, kw], Float32Array.from(w))];
  if (bn || layer.config.use_bias) inputs.push(ctx.floatTensor(`${layer.name}/bias`, [cout], Float32Array.from(bias)));
  const out = ctx.node('Conv', layer.name, inputs, {
    kernel_shape: attr.ints([kh, kw]),
    strides: attr.ints(strides),
    dilations: attr.ints(dilation),
    pads: attr.ints(geom.pads),
    group: attr.int(depthwise ? cin : 1),
  });
  return emitActivation(ctx, layer, { name: out, shape: [cout, geom.outH, geom.outW] }, String(layer.config.activation ?? 'linear'), '_act');
};

const poolHandler: LayerHandler = (ctx, layer, [x]) => {
  requireChannelsLast(layer);
  const [c] = requireFeatureMap(layer, x);
  const kernel = pair(layer.config.pool_size, 'pool_size', layer);
  const strides = pair(layer.config.strides ?? kernel, 'strides', layer);
  const geom = windowGeometry(layer, x, kernel, strides, [1, 1]);
  const max = layer.class_name === 'MaxPooling2D';
  const attributes: Record<string, OnnxAttribute> = { kernel_shape: attr.ints(kernel), strides: attr.ints(strides), pads: attr.ints(geom.pads) };
  // TensorFlow's 'same' average pooling divides by the number of real (unpadded) inputs.
  if (!max) attributes.count_include_pad = attr.int(0);
  return { name: ctx.node(max ? 'MaxPool' : 'AveragePool', layer.name, [x.name], attributes), shape: [c, geom.outH, geom.outW] };
};

/** NHWC axis of a rank-4 Keras tensor → NCHW axis of ours (rank-2 tensors keep their axes). */
function kerasAxisToOnnx(layer: KerasLayer, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank + 1 : axis; // Keras axes count the batch dim; our shapes don't
  if (rank === 3) return [0, 2, 3, 1][a];
  if (a >= 0 && a <= rank) return a;
  throw new Error(`layer "${layer.name}": axis ${axis} is out of range for a rank-${rank + 1} tensor`);
}

const HANDLERS: Record<string, LayerHandler> = {
  Conv2D: convHandler,
  DepthwiseConv2D: convHandler,

  ZeroPadding2D: (ctx, layer, [x]) => {
    const [c, h, w] = requireFeatureMap(layer, x);
    const p = zeroPadding(layer);
    // ONNX Pad lists all begins, then all ends, over N, C, H, W.
    const pads = ctx.int64Tensor(`${layer.name}/pads`, [8], [0, 0, p.top, p.left, 0, 0, p.bottom, p.right]);
    const out = ctx.node('Pad', layer.name, [x.name, pads], { mode: attr.string('constant') });
    return { name: out, shape: [c, h + p.top + p.bottom, w + p.left + p.right] };
  },

  BatchNormalization: (ctx, layer, [x]) => {
    const channels = x.shape[0];
    const { scale, shift } = batchNormAffine(ctx, layer, channels);
    // A BN that could not be folded (its input is not a lone conv) becomes its affine form,
    // which works for feature maps and vectors alike.
    const bshape = x.shape.length === 3 ? [channels, 1, 1] : [channels];
    const mul = ctx.node('Mul', layer.name, [x.name, ctx.floatTensor(`${layer.name}/scale`, bshape, Float32Array.from(scale))]);
    return { name: ctx.node('Add', layer.name, [mul, ctx.floatTensor(`${layer.name}/shift`, bshape, Float32Array.from(shift))]), shape: x.shape };
  },

  ReLU: (ctx, layer, [x]) => {
    const slope = Number(layer.config.negative_slope ?? 0);
    const threshold = Number(layer.config.threshold ?? 0);
    if (slope !== 0 || threshold !== 0) {
      throw new Error(`layer "${layer.name}": ReLU with negative_slope=${slope}, threshold=${threshold} is not supported (only 0, 0)`);
    }
    const max = layer.config.max_value;
    if (max === null || max === undefined) return { name: ctx.node('Relu', layer.name, [x.name]), shape: x.shape };
    return { name: ctx.node('Clip', layer.name, [x.name, ctx.scalar(0), ctx.scalar(Number(max))]), shape: x.shape };
  },

  Activation: (ctx, layer, [x]) => emitActivation(ctx, layer, x, String(layer.config.activation)),

  Add: (ctx, layer, inputs) => {
    if (inputs.length < 2) throw new Error(`layer "${layer.name}": Add needs at least two inputs`);
    for (const v of inputs) {
      if (v.shape.join(',') !== inputs[0].shape.join(',')) {
        throw new Error(`layer "${layer.name}": Add of shapes [${inputs[0].shape}] and [${v.shape}] (broadcasting is not supported)`);
      }
    }
    let acc = inputs[0].name;
    for (const v of inputs.slice(1)) acc = ctx.node('Add', layer.name, [acc, v.name]);
    return { name: acc, shape: inputs[0].shape };
  },

  Concatenate: (ctx, layer, inputs) => {
    const rank = inputs[0].shape.length;
    const axis = kerasAxisToOnnx(layer, Number(layer.config.axis ?? -1), rank);
    const shape = [...inputs[0].shape];
    shape[axis - 1] = inputs.reduce((n, v) => n + v.shape[axis - 1], 0);
    return { name: ctx.node('Concat', layer.name, inputs.map((v) => v.name), { axis: attr.int(axis) }), shape };
  },

  MaxPooling2D: poolHandler,
  AveragePooling2D: poolHandler,

  GlobalAveragePooling2D: (ctx, layer, [x]) => {
    requireChannelsLast(layer);
    const [c] = requireFeatureMap(layer, x);
    const pooled = ctx.node('GlobalAveragePool', layer.name, [x.name]);
    return { name: ctx.node('Flatten', layer.name, [pooled], { axis: attr.int(1) }), shape: [c] };
  },

  // Inference graph: dropout is the identity.
  Dropout: (_ctx, _layer, [x]) => x,
};
