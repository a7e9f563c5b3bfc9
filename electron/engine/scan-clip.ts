// Cross-modal agreement (cross_modal.clip_model_dir): for an image that comes with text — a
// caption given with `scan --text`, a sidecar file `<name>.txt` (or `<name>.<ext>.txt`) next to
// it, the text blocks beside it in an MCP result — the CLIP cosine of image and text, judged
// against the baseline's own captioned images (encoders/clip.ts: calibrateAgreement).
//
// Training: baseline images with a sidecar caption are embedded by CLIP (image through the
// model's AutoProcessor, caption through the text tower); at least 10 pairs calibrate the
// agreement, stored per baseline (clip_calibrations). Fewer pairs, or no CLIP folder: the
// signal is not run, and the verdict's notes say why.
// Scanning: p = P(a legitimate pair agrees this little); the check's value is the engine's
// surprise scale min(1, −log10 p / 4), folded into the verdict (scan-audio.ts foldCheck) with
// the engine's review/block thresholds, so 0.4 / 0.7 mean ≈ 1 in 10 / 1 in 630 legitimate pairs.
import fs from 'node:fs';
import path from 'node:path';
import type { DetectionConfig } from '../../shared/config.js';
import { AgreementModel, calibrateAgreement, openClipEncoder, type AgreementCalibrationState, type ClipEncoder } from './encoders/clip.js';
import { decodeImage, type IngestLimits } from './ingest/image.js';
import type { Store } from './store/store.js';

export interface ClipFinding {
  /** The check's value in [0, 1] (surprise scale of p). */
  value: number;
  p: number;
  cosine: number;
  relative: number;
  text: string;
  baselineAuroc: number;
}

/** A caption next to `file`: `<name>.txt` or `<name>.<ext>.txt`, first non-empty wins. */
export function sidecarCaption(file: string | null): string | null {
  if (!file) return null;
  const ext = path.extname(file);
  for (const candidate of [`${file.slice(0, file.length - ext.length)}.txt`, `${file}.txt`]) {
    if (candidate === file) continue;
    try {
      const text = fs.readFileSync(candidate, 'utf8').trim();
      if (text) return text.slice(0, 2000);
    } catch {
      // no sidecar
    }
  }
  return null;
}

export class ClipPath {
  private encoderPromise: Promise<ClipEncoder> | null = null;
  private cache: { id: number; model: AgreementModel } | null = null;

  constructor(
    private readonly store: Store,
    private readonly cfg: DetectionConfig,
  ) {}

  get enabled(): boolean {
    return this.cfg.cross_modal.clip_model_dir !== null;
  }

  encoder(): Promise<ClipEncoder> {
    if (!this.encoderPromise) {
      const m = this.cfg.embedding_model;
      this.encoderPromise = openClipEncoder(path.resolve(this.cfg.cross_modal.clip_model_dir!), { device: m.device, threads: m.threads, batchSize: Math.min(m.batch_size, 16) });
      this.encoderPromise.catch(() => {
        this.encoderPromise = null;
      });
    }
    return this.encoderPromise;
  }

  /** Calibrates on the baseline's captioned images; the reason when it cannot. */
  async train(baselineId: number, files: readonly (string | null)[], limits: IngestLimits): Promise<{ id: number; n: number; auroc: number } | { reason: string }> {
    const pairs: { file: string; caption: string }[] = [];
    for (const f of files) {
      const caption = sidecarCaption(f);
      if (f && caption && fs.existsSync(f)) pairs.push({ file: f, caption });
    }
    if (pairs.length < 10) return { reason: `clip_agreement not calibrated: ${pairs.length} baseline images have a caption (<name>.txt), at least 10 needed` };
    const enc = await this.encoder();
    const images: Float32Array[] = [];
    const texts: string[] = [];
    for (const p of pairs) {
      try {
        const img = await decodeImage(new Uint8Array(fs.readFileSync(p.file)), limits);
        const [v] = await enc.embedImages([img]);
        images.push(v);
        texts.push(p.caption);
      } catch {
        // unreadable now: left out of the calibration
      }
    }
    let state: AgreementCalibrationState;
    try {
      state = calibrateAgreement(enc.id, images, await enc.embedTexts(texts));
    } catch (err) {
      return { reason: `clip_agreement not calibrated: ${(err as Error).message}` };
    }
    const info = this.store.db
      .prepare('INSERT INTO clip_calibrations (baseline_id, encoder_id, n_pairs, state, created_at) VALUES (?, ?, ?, ?, ?)')
      .run(baselineId, enc.id, images.length, JSON.stringify(state), new Date().toISOString());
    this.store.audit('system', 'clip_calibration.create', `clip_calibration:${Number(info.lastInsertRowid)}`, { n_pairs: images.length, auroc: state.auroc });
    return { id: Number(info.lastInsertRowid), n: images.length, auroc: state.auroc };
  }

  private model(baselineId: number, encoderId: string): AgreementModel | null {
    const row = this.store.db
      .prepare('SELECT id, state FROM clip_calibrations WHERE baseline_id = ? AND encoder_id = ? ORDER BY id DESC LIMIT 1')
      .get(baselineId, encoderId) as { id: number; state: string } | undefined;
    if (!row) return null;
    if (this.cache?.id !== row.id) this.cache = { id: row.id, model: new AgreementModel(JSON.parse(row.state) as AgreementCalibrationState) };
    return this.cache.model;
  }

  /** The agreement of one image with its text, or why it was not measured. */
  async judge(baselineId: number, bytes: Uint8Array, text: string, limits: IngestLimits): Promise<ClipFinding | { note: string }> {
    const enc = await this.encoder();
    const model = this.model(baselineId, enc.id);
    if (!model) return { note: 'clip_agreement not run: the baseline has no CLIP calibration (give at least 10 baseline images a <name>.txt caption and train)' };
    const img = await decodeImage(bytes, limits);
    const [image] = await enc.embedImages([img]);
    const [t] = await enc.embedTexts([text]);
    const r = model.score(image, t, enc.id);
    return {
      value: Math.min(1, -Math.log10(Math.max(r.p, 1e-300)) / 4),
      p: r.p,
      cosine: r.cosine,
      relative: r.relative,
      text: text.length > 200 ? `${text.slice(0, 200)}…` : text,
      baselineAuroc: model.state.auroc,
    };
  }

  async close(): Promise<void> {
    const e = await this.encoderPromise?.catch(() => null);
    await e?.close();
  }
}

export function clipDetail(f: ClipFinding): string {
  return `cos ${f.cosine.toFixed(3)} with "${f.text}", p ${f.p.toPrecision(3)}, relative ${f.relative.toFixed(2)} (1 ≈ a true caption, 0 ≈ an unrelated one); baseline matched-vs-mismatched AUROC ${f.baselineAuroc.toFixed(2)}`;
}
