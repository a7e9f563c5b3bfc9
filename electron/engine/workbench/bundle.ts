// Portable detector bundles: a folder another Parallax (or any ONNX runtime, for the
// autoencoder) can load. manifest.json lists every other file with its sha256 and size, and
// import refuses a bundle whose files do not match it. What travels:
//   detector-set.json  the stored detector-set state exactly as the engine wrote it, with its
//                      configuration and statistics;
//   baseline.json      the baseline members (sha256 and media facts, no local paths) and their
//                      embeddings, which the kNN signal and the neighbour list need;
//   autoencoder.onnx   the autoencoder signal as an ONNX graph;
//   labels.json        the malicious-labelled items and their embeddings, to re-measure TPR.
// Importing into a fresh data folder reproduces the same scores for the same media, provided
// the encoder is the same (its id is checked).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { ApiError, type Res } from '../../../shared/api/contract.js';
import { detectorSetFromJSON } from '../../../shared/detectors/detector-set.js';
import { base64ToFloat32, float32ToBase64 } from '../../../shared/math/base64.js';
import type { Store } from '../store/store.js';
import { ENGINE_VERSION } from '../version.js';
import { readStoredState, type StoredState } from './detector-state.js';
import { autoencoderToOnnx, autoencoderWeights } from './onnx-autoencoder.js';
import { immediate, latestLabels } from './queries.js';

export const BUNDLE_FORMAT = 'parallax.bundle/1';

interface Manifest {
  format: string;
  created_at: string;
  engine_version: string;
  encoder_id: string;
  baseline: string;
  detector_set: { version: number; n_items: number; created_at: string };
  files: { path: string; sha256: string; bytes: number }[];
}

interface BaselineFile {
  format: 'parallax.bundle.baseline/1';
  baseline: string;
  encoder_id: string;
  dim: number;
  members: { sha256: string; modality: string; mime: string; width: number | null; height: number | null; bytes: number }[];
  /** members.length × dim float32, base64, in members order. */
  embeddings: string;
}

interface DetectorSetFile {
  format: 'parallax.bundle.detector-set/1';
  detector_set: { version: number; created_at: string; n_items: number; encoder_id: string; config: unknown; stats: unknown };
  state: StoredState;
}

interface LabelsFile {
  format: 'parallax.bundle.labels/1';
  encoder_id: string;
  items: { sha256: string; label: string; reason: string | null; analyst: string; created_at: string; embedding: string | null }[];
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function exportBundle(
  store: Store,
  opts: { detectorSetId: number; dir: string; analyst: string },
): Res<'exportBundle'> {
  const row = store.detectorSet(opts.detectorSetId);
  if (!row) throw new ApiError('not_found', `detector set ${opts.detectorSetId} does not exist`);
  const baseline = (store.db.prepare('SELECT name FROM baselines WHERE id = ?').get(row.baseline_id) as { name: string }).name;
  const state = readStoredState(store, row.id);
  const set = detectorSetFromJSON(state.set);
  if (fs.existsSync(opts.dir) && fs.readdirSync(opts.dir).length > 0) {
    throw new ApiError('conflict', `export folder ${opts.dir} already exists and is not empty: choose another`);
  }
  // Members' embeddings, in the order the detector set lists them.
  const vec = store.db.prepare('SELECT vector FROM embeddings WHERE item_id = ? AND encoder_id = ?');
  const info = store.db.prepare('SELECT modality, mime, width, height, bytes FROM items WHERE id = ?');
  const dim = set.dim;
  const emb = new Float32Array(state.members.length * dim);
  const members: BaselineFile['members'] = state.members.map((m, i) => {
    const v = vec.get(m.itemId, row.encoder_id) as { vector: Buffer } | undefined;
    if (!v) throw new ApiError('conflict', `baseline item ${m.sha256} of detector set v${row.version} has lost its embedding; retrain before exporting`);
    emb.set(new Float32Array(v.vector.buffer.slice(v.vector.byteOffset, v.vector.byteOffset + v.vector.byteLength)), i * dim);
    const it = info.get(m.itemId) as { modality: string; mime: string; width: number | null; height: number | null; bytes: number };
    return { sha256: m.sha256, ...it };
  });
  const files: Record<string, Uint8Array> = {};
  const json = (obj: unknown) => Buffer.from(`${JSON.stringify(obj)}\n`);
  files['detector-set.json'] = json({
    format: 'parallax.bundle.detector-set/1',
    detector_set: {
      version: row.version,
      created_at: row.created_at,
      n_items: row.n_items,
      encoder_id: row.encoder_id,
      config: JSON.parse(row.config) as unknown,
      stats: JSON.parse(row.stats) as unknown,
    },
    state,
  } satisfies DetectorSetFile);
  files['baseline.json'] = json({
    format: 'parallax.bundle.baseline/1',
    baseline,
    encoder_id: row.encoder_id,
    dim,
    members,
    embeddings: float32ToBase64(emb),
  } satisfies BaselineFile);
  const ae = autoencoderWeights(set);
  if (ae) files['autoencoder.onnx'] = autoencoderToOnnx(ae, { encoder_id: row.encoder_id, detector_set_version: String(row.version) });
  const labelled: LabelsFile['items'] = [];
  const shaOf = store.db.prepare('SELECT sha256 FROM items WHERE id = ?');
  for (const [itemId, l] of latestLabels(store.db)) {
    if (l.label !== 'malicious') continue;
    const v = vec.get(itemId, row.encoder_id) as { vector: Buffer } | undefined;
    labelled.push({
      sha256: (shaOf.get(itemId) as { sha256: string }).sha256,
      label: l.label,
      reason: l.reason,
      analyst: l.analyst,
      created_at: l.created_at,
      embedding: v ? float32ToBase64(new Float32Array(v.vector.buffer.slice(v.vector.byteOffset, v.vector.byteOffset + v.vector.byteLength))) : null,
    });
  }
  files['labels.json'] = json({ format: 'parallax.bundle.labels/1', encoder_id: row.encoder_id, items: labelled } satisfies LabelsFile);

  fs.mkdirSync(opts.dir, { recursive: true });
  const listed: Manifest['files'] = [];
  for (const [name, bytes] of Object.entries(files)) {
    fs.writeFileSync(path.join(opts.dir, name), bytes);
    listed.push({ path: name, sha256: sha256(bytes), bytes: bytes.byteLength });
  }
  const manifest: Manifest = {
    format: BUNDLE_FORMAT,
    created_at: new Date().toISOString(),
    engine_version: ENGINE_VERSION,
    encoder_id: row.encoder_id,
    baseline,
    detector_set: { version: row.version, n_items: row.n_items, created_at: row.created_at },
    files: listed,
  };
  const manifestBytes = json(manifest);
  fs.writeFileSync(path.join(opts.dir, 'manifest.json'), manifestBytes);
  immediate(store.db, () =>
    store.audit(opts.analyst, 'bundle.export', `detector_set:${row.id}`, { dir: opts.dir, manifest_sha256: sha256(manifestBytes), version: row.version }),
  );
  return {
    dir: opts.dir,
    files: [...listed, { path: 'manifest.json', sha256: sha256(manifestBytes), bytes: manifestBytes.byteLength }],
    detector_set: { id: row.id, version: row.version, n_items: row.n_items },
    encoder_id: row.encoder_id,
  };
}

function readVerified(dir: string, manifest: Manifest, name: string): Buffer {
  const entry = manifest.files.find((f) => f.path === name);
  if (!entry) throw new ApiError('bad_request', `bundle ${dir}: manifest.json does not list ${name}`);
  const bytes = fs.readFileSync(path.join(dir, name));
  if (bytes.byteLength !== entry.bytes || sha256(bytes) !== entry.sha256) {
    throw new ApiError('bad_request', `bundle ${dir}: ${name} does not match manifest.json (sha256 or size differs): refusing a modified bundle`);
  }
  return bytes;
}

export function readManifest(dir: string): Manifest {
  const file = path.join(dir, 'manifest.json');
  if (!fs.existsSync(file)) throw new ApiError('not_found', `${dir} is not a Parallax bundle: no manifest.json`);
  let manifest: Manifest;
  try {
    manifest = JSON.parse(fs.readFileSync(file, 'utf8')) as Manifest;
  } catch (err) {
    throw new ApiError('bad_request', `bundle ${dir}: manifest.json is not JSON (${(err as Error).message})`);
  }
  if (manifest.format !== BUNDLE_FORMAT) {
    throw new ApiError('bad_request', `bundle ${dir}: format '${String(manifest.format)}' is not ${BUNDLE_FORMAT}`);
  }
  for (const f of manifest.files ?? []) {
    // Only plain names: a manifest must not point outside its folder.
    if (!/^[A-Za-z0-9._-]+$/.test(f.path) || f.path.startsWith('.')) {
      throw new ApiError('bad_request', `bundle ${dir}: manifest lists an unsafe path '${f.path}'`);
    }
  }
  return manifest;
}

/** Verifies every listed file, then imports members, embeddings and the detector set. */
export function importBundle(
  store: Store,
  opts: { dir: string; baseline?: string; activate: boolean; localEncoderId: string; analyst: string },
): Res<'importBundle'> {
  const dir = path.resolve(opts.dir);
  const manifest = readManifest(dir);
  const verified = manifest.files.map((f) => readVerified(dir, manifest, f.path));
  void verified;
  if (manifest.encoder_id !== opts.localEncoderId) {
    throw new ApiError(
      'conflict',
      `bundle ${dir} was made with encoder ${manifest.encoder_id} but this Parallax runs ${opts.localEncoderId}: its scores would not mean the same; import it where that encoder is configured`,
    );
  }
  const ds = JSON.parse(readVerified(dir, manifest, 'detector-set.json').toString('utf8')) as DetectorSetFile;
  const bl = JSON.parse(readVerified(dir, manifest, 'baseline.json').toString('utf8')) as BaselineFile;
  if (ds.format !== 'parallax.bundle.detector-set/1' || bl.format !== 'parallax.bundle.baseline/1') {
    throw new ApiError('bad_request', `bundle ${dir}: unknown detector-set or baseline file format`);
  }
  // Refuse a state this build cannot score before writing anything.
  const set = detectorSetFromJSON(ds.state.set);
  const emb = base64ToFloat32(bl.embeddings);
  if (emb.length !== bl.members.length * bl.dim || bl.dim !== set.dim) {
    throw new ApiError('bad_request', `bundle ${dir}: baseline.json holds ${emb.length} values for ${bl.members.length} members of dimension ${bl.dim} (the detector set expects ${set.dim})`);
  }
  const bySha = new Map(bl.members.map((m, i) => [m.sha256, i]));
  for (const m of ds.state.members) {
    if (!bySha.has(m.sha256)) throw new ApiError('bad_request', `bundle ${dir}: detector-set member ${m.sha256} has no embedding in baseline.json`);
  }
  const baselineName = opts.baseline ?? bl.baseline;
  return immediate(store.db, () => {
    const baselineId = store.ensureBaseline(baselineName);
    const idOf = new Map<string, number>();
    let added = 0;
    bl.members.forEach((m, i) => {
      const before = store.itemBySha(m.sha256);
      const row = store.upsertItem(
        { sha256: m.sha256, modality: m.modality as 'image', mime: m.mime, width: m.width, height: m.height, bytes: m.bytes, path: null },
        'bundle-import',
      );
      // The bundle's vectors are what the detector set was fitted with: they must win.
      store.putEmbedding(row.id, manifest.encoder_id, emb.slice(i * bl.dim, (i + 1) * bl.dim));
      if (store.addToBaseline(baselineId, row.id) || !before) added++;
      idOf.set(m.sha256, row.id);
    });
    const state: StoredState = {
      ...ds.state,
      members: ds.state.members.map((m) => ({ itemId: idOf.get(m.sha256)!, sha256: m.sha256, path: null })),
    };
    const stats = { ...(ds.detector_set.stats as Record<string, unknown>), imported_from: { dir, version: manifest.detector_set.version, created_at: manifest.created_at } };
    const row = store.saveDetectorSet({
      baselineId,
      encoderId: manifest.encoder_id,
      nItems: ds.detector_set.n_items,
      config: ds.detector_set.config,
      stats,
      state: gzipSync(Buffer.from(JSON.stringify(state))),
      activate: opts.activate,
    });
    store.audit(opts.analyst, 'bundle.import', `detector_set:${row.id}`, {
      dir,
      from_version: manifest.detector_set.version,
      version: row.version,
      files: manifest.files.length,
    });
    return {
      baseline: baselineName,
      detector_set: { id: row.id, version: row.version, n_items: row.n_items },
      encoder_id: manifest.encoder_id,
      items_added: added,
      verified_files: manifest.files.length,
      activated: opts.activate,
    };
  });
}
