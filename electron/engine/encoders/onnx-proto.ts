// Minimal ONNX ModelProto writer.
//
// Only the subset of onnx.proto that a converted feed-forward CNN needs is modelled: a single graph
// of nodes with attributes, float32/int64 initializers stored as raw_data, and tensor-typed inputs
// and outputs whose dims may be symbolic. Writing protobuf by hand keeps the install-time converter
// free of a protobuf dependency (and of code generation); the field numbers below are those of
// onnx/onnx.proto (proto2 syntax), and repeated scalars are written unpacked, as proto2 does by
// default, except where onnx.proto declares [packed = true] (we use none of those: tensor payloads
// go in raw_data).

/** Element types we emit; values are TensorProto.DataType. */
export const OnnxDataType = { float32: 1, int64: 7 } as const;
export type OnnxElemType = keyof typeof OnnxDataType;

/** A tagged attribute value: ONNX distinguishes INT from FLOAT, which a JS number cannot. */
export type OnnxAttribute =
  | { type: 'float'; value: number }
  | { type: 'int'; value: number }
  | { type: 'string'; value: string }
  | { type: 'floats'; value: readonly number[] }
  | { type: 'ints'; value: readonly number[] };

/** Constructors that read well at call sites: `{ strides: attr.ints([2, 2]) }`. */
export const attr = {
  float: (value: number): OnnxAttribute => ({ type: 'float', value }),
  int: (value: number): OnnxAttribute => ({ type: 'int', value }),
  string: (value: string): OnnxAttribute => ({ type: 'string', value }),
  floats: (value: readonly number[]): OnnxAttribute => ({ type: 'floats', value }),
  ints: (value: readonly number[]): OnnxAttribute => ({ type: 'ints', value }),
};

export interface OnnxNode {
  opType: string;
  name: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attributes?: Readonly<Record<string, OnnxAttribute>>;
  docString?: string;
}

export type OnnxTensor =
  | { name: string; elemType: 'float32'; dims: readonly number[]; data: Float32Array }
  | { name: string; elemType: 'int64'; dims: readonly number[]; data: BigInt64Array };

/** A graph input or output. A string dim is symbolic (dim_param), e.g. 'N' for the batch. */
export interface OnnxValueInfo {
  name: string;
  elemType: OnnxElemType;
  dims: readonly (number | string)[];
  docString?: string;
}

export interface OnnxGraph {
  name: string;
  nodes: readonly OnnxNode[];
  initializers: readonly OnnxTensor[];
  inputs: readonly OnnxValueInfo[];
  outputs: readonly OnnxValueInfo[];
  docString?: string;
}

export interface OnnxModel {
  irVersion: number;
  opsetImports: readonly { domain: string; version: number }[];
  producerName: string;
  producerVersion: string;
  docString?: string;
  metadata?: Readonly<Record<string, string>>;
  graph: OnnxGraph;
}

// ---------------------------------------------------------------------------------------------
// Field numbers (onnx.proto)

const ModelProto = { ir_version: 1, producer_name: 2, producer_version: 3, doc_string: 6, graph: 7, opset_import: 8, metadata_props: 14 } as const;
const OperatorSetIdProto = { domain: 1, version: 2 } as const;
const StringStringEntryProto = { key: 1, value: 2 } as const;
const GraphProto = { node: 1, name: 2, initializer: 5, doc_string: 10, input: 11, output: 12 } as const;
const NodeProto = { input: 1, output: 2, name: 3, op_type: 4, attribute: 5, doc_string: 6 } as const;
const AttributeProto = { name: 1, f: 2, i: 3, s: 4, floats: 7, ints: 8, type: 20 } as const;
const AttributeType = { float: 1, int: 2, string: 3, floats: 6, ints: 7 } as const;
const TensorProto = { dims: 1, data_type: 2, name: 8, raw_data: 9 } as const;
const ValueInfoProto = { name: 1, type: 2, doc_string: 3 } as const;
const TypeProto = { tensor_type: 1 } as const;
const TypeProtoTensor = { elem_type: 1, shape: 2 } as const;
const TensorShapeProto = { dim: 1 } as const;
const Dimension = { dim_value: 1, dim_param: 2 } as const;

const WIRE_VARINT = 0;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

// ---------------------------------------------------------------------------------------------
// Wire-format writer

const textEncoder = new TextEncoder();
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Appends protobuf fields to a list of chunks; nested messages are encoded first, then embedded. */
class ProtoWriter {
  private chunks: Uint8Array[] = [];
  private length = 0;
  private scratch: number[] = [];

  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.length += bytes.length;
  }

  private flushScratch(): void {
    if (this.scratch.length > 0) {
      this.push(Uint8Array.from(this.scratch));
      this.scratch = [];
    }
  }

  private varint(value: number | bigint): void {
    // int64 fields: negative values are written as their 64-bit two's complement (10 bytes).
    let v = typeof value === 'bigint' ? value : BigInt(value);
    if (typeof value === 'number' && !Number.isSafeInteger(value)) {
      throw new RangeError(`onnx-proto: ${value} is not an integer that can be written as a varint`);
    }
    if (v < 0n) v = BigInt.asUintN(64, v);
    while (v > 0x7fn) {
      this.scratch.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.scratch.push(Number(v));
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, value: number): void {
    this.tag(field, WIRE_VARINT);
    this.varint(value);
  }

  float(field: number, value: number): void {
    this.tag(field, WIRE_FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    for (const x of b) this.scratch.push(x);
  }

  bytes(field: number, value: Uint8Array): void {
    this.tag(field, WIRE_LEN);
    this.varint(value.length);
    this.flushScratch();
    // Large payloads (weights) are referenced, not copied, until the final concat.
    this.push(value);
  }

  string(field: number, value: string): void {
    this.bytes(field, textEncoder.encode(value));
  }

  message(field: number, encode: (w: ProtoWriter) => void): void {
    const child = new ProtoWriter();
    encode(child);
    this.bytes(field, child.finish());
  }

  finish(): Uint8Array {
    this.flushScratch();
    if (this.chunks.length === 1) return this.chunks[0];
    const out = new Uint8Array(this.length);
    let offset = 0;
    for (const c of this.chunks) {
      out.set(c, offset);
      offset += c.length;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Message encoders

function rawBytes(data: Float32Array | BigInt64Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  // raw_data is little-endian by definition; byte-swap on a big-endian host.
  const out = new Uint8Array(data.byteLength);
  const view = new DataView(out.buffer);
  if (data instanceof Float32Array) data.forEach((v, i) => view.setFloat32(i * 4, v, true));
  else data.forEach((v, i) => view.setBigInt64(i * 8, v, true));
  return out;
}

function writeTensor(w: ProtoWriter, t: OnnxTensor): void {
  const expected = t.dims.reduce((a, b) => a * b, 1);
  if (t.data.length !== expected) {
    throw new Error(`onnx-proto: initializer "${t.name}" has ${t.data.length} values but dims [${t.dims.join(',')}] need ${expected}`);
  }
  for (const d of t.dims) w.int(TensorProto.dims, d);
  w.int(TensorProto.data_type, OnnxDataType[t.elemType]);
  w.string(TensorProto.name, t.name);
  w.bytes(TensorProto.raw_data, rawBytes(t.data));
}

function writeAttribute(w: ProtoWriter, name: string, a: OnnxAttribute): void {
  w.string(AttributeProto.name, name);
  w.int(AttributeProto.type, AttributeType[a.type]);
  switch (a.type) {
    case 'float':
      w.float(AttributeProto.f, a.value);
      break;
    case 'int':
      w.int(AttributeProto.i, a.value);
      break;
    case 'string':
      w.string(AttributeProto.s, a.value);
      break;
    case 'floats':
      for (const v of a.value) w.float(AttributeProto.floats, v);
      break;
    case 'ints':
      for (const v of a.value) w.int(AttributeProto.ints, v);
      break;
  }
}

function writeNode(w: ProtoWriter, n: OnnxNode): void {
  for (const i of n.inputs) w.string(NodeProto.input, i);
  for (const o of n.outputs) w.string(NodeProto.output, o);
  w.string(NodeProto.name, n.name);
  w.string(NodeProto.op_type, n.opType);
  for (const [name, a] of Object.entries(n.attributes ?? {})) {
    w.message(NodeProto.attribute, (aw) => writeAttribute(aw, name, a));
  }
  if (n.docString) w.string(NodeProto.doc_string, n.docString);
}

function writeValueInfo(w: ProtoWriter, v: OnnxValueInfo): void {
  w.string(ValueInfoProto.name, v.name);
  w.message(ValueInfoProto.type, (tw) =>
    tw.message(TypeProto.tensor_type, (tt) => {
      tt.int(TypeProtoTensor.elem_type, OnnxDataType[v.elemType]);
      tt.message(TypeProtoTensor.shape, (sw) => {
        for (const d of v.dims) {
          sw.message(TensorShapeProto.dim, (dw) => {
            if (typeof d === 'string') dw.string(Dimension.dim_param, d);
            else dw.int(Dimension.dim_value, d);
          });
        }
      });
    }),
  );
  if (v.docString) w.string(ValueInfoProto.doc_string, v.docString);
}

function writeGraph(w: ProtoWriter, g: OnnxGraph): void {
  for (const n of g.nodes) w.message(GraphProto.node, (nw) => writeNode(nw, n));
  w.string(GraphProto.name, g.name);
  for (const t of g.initializers) w.message(GraphProto.initializer, (tw) => writeTensor(tw, t));
  if (g.docString) w.string(GraphProto.doc_string, g.docString);
  for (const i of g.inputs) w.message(GraphProto.input, (vw) => writeValueInfo(vw, i));
  for (const o of g.outputs) w.message(GraphProto.output, (vw) => writeValueInfo(vw, o));
}

/** Serialises a model to the bytes of an .onnx file. Deterministic: same model, same bytes. */
export function encodeOnnxModel(model: OnnxModel): Uint8Array {
  const w = new ProtoWriter();
  w.int(ModelProto.ir_version, model.irVersion);
  for (const op of model.opsetImports) {
    w.message(ModelProto.opset_import, (ow) => {
      ow.string(OperatorSetIdProto.domain, op.domain);
      ow.int(OperatorSetIdProto.version, op.version);
    });
  }
  w.string(ModelProto.producer_name, model.producerName);
  w.string(ModelProto.producer_version, model.producerVersion);
  if (model.docString) w.string(ModelProto.doc_string, model.docString);
  w.message(ModelProto.graph, (gw) => writeGraph(gw, model.graph));
  for (const [key, value] of Object.entries(model.metadata ?? {})) {
    w.message(ModelProto.metadata_props, (mw) => {
      mw.string(StringStringEntryProto.key, key);
      mw.string(StringStringEntryProto.value, value);
    });
  }
  return w.finish();
}
