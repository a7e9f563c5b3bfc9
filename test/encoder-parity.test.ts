// The converted ONNX model must compute what the original Keras model computes.
//
// Reference: the ORIGINAL nsfwjs model run by TensorFlow.js (wasm backend), fed the quantised
// weights exactly as shipped so that TensorFlow.js dequantises them itself; this checks the
// converter's dequantisation, weight layouts, BN folding and padding all at once.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';

import { ensureBuiltModel } from '../electron/engine/encoders/build.js';
import { convertKerasArtifacts, loadKerasArtifacts, type KerasArtifacts, type KerasModelTopology, type WeightSpec } from '../electron/engine/encoders/keras-to-onnx.js';
import { openMobileNetEncoder } from '../electron/engine/encoders/mobilenet.js';
import { repoRoot, sharedData } from './helpers/repo-root.js';

const PHOTOS = ['skimage__astronaut.jpg', 'skimage__coffee.jpg', 'opencv__fruits.jpg', 'opencv__messi5.jpg', 'skimage__motorcycle_left.jpg', 'opencv__graf1.jpg'];
const SIZE = 224;
const MIN_COSINE = 0.999;

let backendNote = '';

before(async () => {
  // The wasm backend runs in Node given the folder of its .wasm files. Should it ever fail to
  // start (e.g. a Node without the needed WebAssembly features), the pure-JS 'cpu' backend
  // computes the same maths, only slower, so the test falls back to it rather than failing.
  setWasmPaths(`${path.join(repoRoot(), 'node_modules', '@tensorflow', 'tfjs-backend-wasm', 'dist')}${path.sep}`);
  let ok = false;
  try {
    ok = await tf.setBackend('wasm');
  } catch (err) {
    backendNote = ` (wasm failed: ${(err as Error).message})`;
  }
  if (!ok) await tf.setBackend('cpu');
  await tf.ready();
});

async function loadPhotos(files: readonly string[]): Promise<Float32Array> {
  const out = new Float32Array(files.length * SIZE * SIZE * 3);
  for (const [i, file] of files.entries()) {
    const raw = await sharp(sharedData('images', 'library_sample_photos', file)).removeAlpha().resize(SIZE, SIZE, { fit: 'fill', kernel: 'linear' }).raw().toBuffer();
    for (let j = 0; j < raw.length; j++) out[i * raw.length + j] = raw[j] / 255;
  }
  return out;
}

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

/** Loads Keras artifacts into TensorFlow.js through an in-memory IOHandler. */
function tfjsModel(a: Pick<KerasArtifacts, 'modelTopology' | 'weightSpecs' | 'weightData'>): Promise<tf.LayersModel> {
  return tf.loadLayersModel({
    load: async () => ({
      modelTopology: a.modelTopology as object,
      weightSpecs: a.weightSpecs as tf.io.WeightsManifestEntry[],
      weightData: a.weightData.slice().buffer,
    }),
  });
}

/** Output of one layer of a TensorFlow.js model, for a batch of NHWC inputs. */
function tfjsLayerOutput(model: tf.LayersModel, layer: string, x: Float32Array, shape: [number, number, number, number]): tf.Tensor {
  const sub = tf.model({ inputs: model.inputs, outputs: model.getLayer(layer).output as tf.SymbolicTensor });
  return tf.tidy(() => sub.predict(tf.tensor4d(x, shape)) as tf.Tensor);
}

test('converted MobileNetV2 backbone matches the original Keras model (TensorFlow.js) on real photos', async (t) => {
  const root = repoRoot();
  const built = await ensureBuiltModel(path.join(root, 'models', 'mobilenet_v2_backbone.model.json'), path.join(root, 'models', 'build'));
  const pkgDir = path.join(root, 'node_modules', built.manifest.source.package);
  const source = loadKerasArtifacts(path.join(pkgDir, built.manifest.source.model), built.manifest.source.shards.map((s) => path.join(pkgDir, s)));
  assert.equal(source.weightsSha256, built.manifest.source.weightsSha256);
  assert.ok(source.weightSpecs.every((w) => w.quantization?.dtype === 'uint8'), 'the reference sees the shipped (quantised) weights');

  const pixels = await loadPhotos(PHOTOS);
  const model = await tfjsModel(source);
  const outRelu = tfjsLayerOutput(model, 'out_relu', pixels, [PHOTOS.length, SIZE, SIZE, 3]);
  assert.deepEqual(outRelu.shape, [PHOTOS.length, 7, 7, 1280]);
  const reference = (await outRelu.mean([1, 2]).array()) as number[][];
  tf.dispose([outRelu]);
  model.dispose();

  const encoder = await openMobileNetEncoder({ modelDir: path.dirname(built.onnxPath), device: 'cpu', batchSize: 4 });
  let min = 1;
  try {
    const features = await encoder.rawFeatures(pixels, PHOTOS.length);
    for (let i = 0; i < PHOTOS.length; i++) {
      const c = cosine(features[i], reference[i]);
      min = Math.min(min, c);
      assert.ok(c >= MIN_COSINE, `${PHOTOS[i]}: cosine ${c} < ${MIN_COSINE}`);
    }
  } finally {
    await encoder.close();
  }
  t.diagnostic(`min cosine ONNX vs TensorFlow.js (${tf.getBackend()} backend${backendNote}) over ${PHOTOS.length} photos: ${min.toFixed(9)} (1 - min = ${(1 - min).toExponential(2)})`);
});

// ---------------------------------------------------------------------------------------------
// Layers and configurations that MobileNetV2 does not exercise, on a small random network built
// with TensorFlow.js's own layers API (so its topology is in tfjs's format rather than Keras's).

function syntheticModel(): tf.LayersModel {
  const L = tf.layers;
  const input = tf.input({ shape: [17, 19, 3], name: 'in' });
  const apply = (layer: tf.layers.Layer, x: tf.SymbolicTensor | tf.SymbolicTensor[]) => layer.apply(x) as tf.SymbolicTensor;
  // Read by two convolutions, so it stays a Pad node (asymmetric padding).
  const padA = apply(L.zeroPadding2d({ padding: [[1, 0], [2, 1]], name: 'padA' }), input);
  const c1 = apply(L.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', useBias: true, activation: 'relu', name: 'c1' }), padA);
  const c2 = apply(L.conv2d({ filters: 8, kernelSize: 2, strides: 2, padding: 'valid', useBias: false, name: 'c2' }), padA);
  const bn2 = apply(L.batchNormalization({ name: 'bn2' }), c2);
  const add = apply(L.add({ name: 'add' }), [c1, bn2]);
  // depth_multiplier 2, bias, 'same' with stride 2 on odd sizes (TF puts the extra pad at the end).
  const dw = apply(L.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, strides: 2, padding: 'same', useBias: true, name: 'dw' }), add);
  const bnDw = apply(L.batchNormalization({ name: 'bnDw', scale: false }), dw);
  const relu6 = apply(L.reLU({ maxValue: 6, name: 'relu6' }), bnDw);
  const mp = apply(L.maxPooling2d({ poolSize: 3, strides: 1, padding: 'same', name: 'mp' }), relu6);
  const ap = apply(L.averagePooling2d({ poolSize: 3, strides: 1, padding: 'same', name: 'ap' }), relu6);
  const cat = apply(L.concatenate({ axis: -1, name: 'cat' }), [mp, ap]);
  // BN after a concatenation cannot be folded: emitted as its affine form.
  const bnCat = apply(L.batchNormalization({ name: 'bnCat' }), cat);
  const act = apply(L.activation({ activation: 'sigmoid', name: 'act' }), bnCat);
  const drop = apply(L.dropout({ rate: 0.5, name: 'drop' }), act);
  const zp = apply(L.zeroPadding2d({ padding: 1, name: 'zp' }), drop);
  const c3 = apply(L.conv2d({ filters: 12, kernelSize: 3, dilationRate: 2, padding: 'valid', activation: 'tanh', name: 'c3' }), zp);
  const gap = apply(L.globalAveragePooling2d({ name: 'gap' }), c3);
  const model = tf.model({ inputs: input, outputs: gap, name: 'synthetic' });
  // Random but valid weights (positive variances) so that every parameter matters.
  let seed = 1;
  for (const layer of model.layers) {
    layer.setWeights(
      layer.weights.map((w) =>
        /moving_variance|gamma/.test(w.name) ? tf.randomUniform(w.shape as number[], 0.5, 1.5, 'float32', seed++) : tf.randomNormal(w.shape as number[], 0, 0.5, 'float32', seed++),
      ),
    );
  }
  return model;
}

async function saveArtifacts(model: tf.LayersModel): Promise<KerasArtifacts> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      saved = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  const weightSpecs = saved!.weightSpecs as WeightSpec[];
  const weightData = new Uint8Array(saved!.weightData as ArrayBuffer);
  return {
    modelTopology: saved!.modelTopology as KerasModelTopology,
    weightsManifest: [{ paths: [], weights: weightSpecs }],
    weightSpecs,
    weightData,
    weightsSha256: createHash('sha256').update(weightData).digest('hex'),
  };
}

test('converter handles padding, pooling, concatenation, unfolded BN and activations like TensorFlow.js', async () => {
  const model = syntheticModel();
  const artifacts = await saveArtifacts(model);
  const n = 3;
  const x = Float32Array.from({ length: n * 17 * 19 * 3 }, (_, i) => ((i * 7919) % 1000) / 1000);

  const cases = [
    { outputLayer: 'gap', pool: 'none' as const, expectOps: ['Pad', 'Concat', 'MaxPool', 'AveragePool', 'Mul', 'Sigmoid', 'Tanh'] },
    { outputLayer: 'c3', pool: 'none' as const, expectOps: [] }, // feature map, returned as NHWC
    { outputLayer: 'c3', pool: 'global_avg' as const, expectOps: [] },
  ];
  for (const { outputLayer, pool, expectOps } of cases) {
    const converted = convertKerasArtifacts(artifacts, { outputLayer, pool });
    const emitted = converted.layers.map((l) => l.emitted).join(' ');
    for (const op of expectOps) assert.ok(emitted.includes(op), `${outputLayer}/${pool}: expected a ${op} node; got ${emitted}`);
    assert.equal(converted.layers.find((l) => l.name === 'bn2')?.emitted, 'folded into c2');
    assert.equal(converted.layers.find((l) => l.name === 'zp')?.emitted, 'folded into c3');

    let reference = tfjsLayerOutput(model, outputLayer, x, [n, 17, 19, 3]);
    if (pool === 'global_avg') reference = reference.mean([1, 2]);
    const expected = reference.dataSync();
    const expectedShape = ['N', ...reference.shape.slice(1)];
    reference.dispose();
    assert.deepEqual(converted.output.dims, expectedShape, `${outputLayer}/${pool}: output dims`);

    const session = await ort.InferenceSession.create(converted.onnx);
    try {
      const out = await session.run({ pixels: new ort.Tensor('float32', x, [n, 17, 19, 3]) });
      const got = out.features.data as Float32Array;
      assert.equal(got.length, expected.length);
      const maxDiff = got.reduce((m, v, i) => Math.max(m, Math.abs(v - expected[i])), 0);
      assert.ok(maxDiff < 1e-4, `${outputLayer}/${pool}: max |ONNX - tfjs| = ${maxDiff}`);
    } finally {
      await session.release();
    }
  }
  model.dispose();
});

test('converter refuses what it cannot convert, naming the layer', async () => {
  const L = tf.layers;
  const input = tf.input({ shape: [8, 8, 3], name: 'in' });
  const conv = L.conv2d({ filters: 4, kernelSize: 3, name: 'conv' }).apply(input) as tf.SymbolicTensor;
  const up = L.upSampling2d({ size: [2, 2], name: 'up' }).apply(conv) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: up });
  const artifacts = await saveArtifacts(model);
  assert.throws(() => convertKerasArtifacts(artifacts, { outputLayer: 'up', pool: 'none' }), /layer "up": Keras layer class UpSampling2D is not supported/);
  assert.throws(() => convertKerasArtifacts(artifacts, { outputLayer: 'nope', pool: 'none' }), /no layer named "nope"/);
  // Up to the conv it converts fine.
  assert.equal(convertKerasArtifacts(artifacts, { outputLayer: 'conv', pool: 'global_avg' }).output.dims[1], 4);
  model.dispose();
});
