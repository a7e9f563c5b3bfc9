// Media for the workbench: items keep the path they were first seen at (and every later
// sighting's path). The bytes are served from there only while they still hash to the item's
// sha256, so a file replaced on disk is never shown as the item. Thumbnails are made once
// (through the engine's guarded decoder: the bytes are untrusted) and cached by sha256.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { ApiError } from '../../../shared/api/contract.js';
import { decodeImage, type IngestLimits } from '../ingest/image.js';
import { sniff } from '../ingest/sniff.js';
import { analyseLogMel, decodeAudio, LOGMEL_PARAMS } from '../audio/index.js';
import type { Store } from '../store/store.js';

export interface MediaBytes {
  mime: string;
  bytes: Buffer;
  /** Where the verified bytes were read from (originals only). */
  path?: string;
}

/** What a browser shows as is; anything else (TIFF) is converted to PNG for display. */
const DISPLAYABLE = new Set(['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/bmp']);
const THUMB_SIZE = 256;

export class MediaLibrary {
  private readonly inflight = new Map<string, Promise<MediaBytes>>();

  constructor(
    private readonly store: Store,
    private readonly cacheDir: string,
    private readonly limits: IngestLimits,
  ) {}

  /** Paths this item was seen at, first sighting first. */
  private candidatePaths(itemId: number, firstPath: string | null): string[] {
    const rows = this.store.db
      .prepare('SELECT DISTINCT path FROM sightings WHERE item_id = ? AND path IS NOT NULL ORDER BY id')
      .all(itemId) as { path: string }[];
    const all = [firstPath, ...rows.map((r) => r.path)].filter((p): p is string => !!p && path.isAbsolute(p));
    return [...new Set(all)];
  }

  /** Cheap check for listings: a file exists at one of the item's paths (content checked when served). */
  status(sha256: string): { retained: boolean; reason: string | null } {
    const item = this.store.itemBySha(sha256);
    if (!item) return { retained: false, reason: `media not retained: item ${sha256} is unknown` };
    const paths = this.candidatePaths(item.id, item.first_path);
    if (paths.length === 0) {
      return { retained: false, reason: `media not retained: item ${short(sha256)} arrived without a file (for example through the MCP guard or an upload)` };
    }
    if (paths.some((p) => fs.existsSync(p))) return { retained: true, reason: null };
    const thumb = fs.existsSync(this.thumbPath(sha256)) ? ' (its thumbnail is kept)' : '';
    return { retained: false, reason: `media not retained: ${paths[0]} no longer exists${thumb}` };
  }

  /** The original bytes, verified against the item's sha256. */
  async original(sha256: string): Promise<MediaBytes> {
    const item = this.store.itemBySha(sha256);
    if (!item) throw new ApiError('not_found', `no item with sha256 ${sha256}`);
    const paths = this.candidatePaths(item.id, item.first_path);
    if (paths.length === 0) {
      throw new ApiError('media_not_retained', `media not retained: item ${short(sha256)} arrived without a file`);
    }
    let reason = `media not retained: ${paths[0]} no longer exists`;
    for (const p of paths) {
      let bytes: Buffer;
      try {
        bytes = await fs.promises.readFile(p);
      } catch {
        continue;
      }
      if (createHash('sha256').update(bytes).digest('hex') === sha256) return { mime: item.mime, bytes, path: p };
      reason = `media not retained: ${p} has changed since item ${short(sha256)} was scanned (its sha256 differs)`;
    }
    throw new ApiError('media_not_retained', reason);
  }

  async get(sha256: string, variant: 'thumb' | 'full'): Promise<MediaBytes> {
    if (variant === 'full') {
      const orig = await this.original(sha256);
      if (DISPLAYABLE.has(orig.mime)) return { mime: orig.mime, bytes: orig.bytes };
      return { mime: 'image/png', bytes: await this.render(orig.bytes, null, 'png') };
    }
    const cached = this.thumbPath(sha256);
    try {
      return { mime: 'image/webp', bytes: await fs.promises.readFile(cached) };
    } catch {
      // Not made yet.
    }
    // Concurrent requests for one thumbnail (a grid scrolling in) share one decode.
    let p = this.inflight.get(sha256);
    if (!p) {
      p = (async () => {
        const orig = await this.original(sha256);
        const bytes = await this.render(orig.bytes, THUMB_SIZE, 'webp');
        await fs.promises.mkdir(path.dirname(cached), { recursive: true });
        const tmp = `${cached}.${process.pid}.tmp`;
        await fs.promises.writeFile(tmp, bytes);
        await fs.promises.rename(tmp, cached);
        return { mime: 'image/webp', bytes };
      })().finally(() => this.inflight.delete(sha256));
      this.inflight.set(sha256, p);
    }
    return p;
  }

  private thumbPath(sha256: string): string {
    return path.join(this.cacheDir, sha256.slice(0, 2), `${sha256}.webp`);
  }

  private async render(bytes: Buffer, size: number | null, format: 'webp' | 'png'): Promise<Buffer> {
    // Audio has no picture: its log-mel spectrogram (what the default audio encoder sees) stands in.
    const img = sniff(bytes.subarray(0, 8192)).modality === 'audio' ? await spectrogram(bytes, this.limits) : await decodeImage(bytes, this.limits);
    let pipeline = sharp(img.rgb, { raw: { width: img.width, height: img.height, channels: 3 } });
    if (size) pipeline = pipeline.resize(size, size, { fit: 'inside', withoutEnlargement: true });
    return format === 'webp' ? pipeline.webp({ quality: 78 }).toBuffer() : pipeline.png().toBuffer();
  }
}

/**
 * Log-mel spectrogram as an RGB image: time left to right, low frequencies at the bottom,
 * one column per frame (at least 256 wide, stretched), dB mapped to a dark-to-yellow ramp.
 */
export async function spectrogram(bytes: Uint8Array, limits: IngestLimits): Promise<{ rgb: Uint8Array; width: number; height: number }> {
  const audio = await decodeAudio(bytes, { maxFileBytes: limits.maxFileBytes, timeoutMs: Math.max(30_000, limits.decodeTimeoutMs) }, { sampleRate: LOGMEL_PARAMS.sampleRate, strict: false });
  const a = analyseLogMel(audio.samples.length > 0 ? audio.samples : new Float32Array(LOGMEL_PARAMS.sampleRate / 10));
  const bands = a.logMel.length / a.frames;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of a.logMel) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const scale = hi > lo ? 1 / (hi - lo) : 0;
  const cellH = 3;
  const width = Math.max(256, a.frames);
  const height = bands * cellH;
  const rgb = new Uint8Array(width * height * 3);
  for (let x = 0; x < width; x++) {
    const f = Math.min(a.frames - 1, Math.floor((x * a.frames) / width));
    for (let m = 0; m < bands; m++) {
      const t = (a.logMel[m * a.frames + f] - lo) * scale;
      // dark blue -> magenta -> yellow
      const r = Math.round(255 * Math.min(1, 1.6 * t));
      const g = Math.round(255 * Math.max(0, t * 1.4 - 0.4));
      const b = Math.round(255 * (t < 0.5 ? 0.3 + t : Math.max(0, 1.3 - 1.6 * t)));
      for (let dy = 0; dy < cellH; dy++) {
        const y = height - 1 - (m * cellH + dy);
        const o = (y * width + x) * 3;
        rgb[o] = r;
        rgb[o + 1] = g;
        rgb[o + 2] = b;
      }
    }
  }
  return { rgb, width, height };
}

function short(sha256: string): string {
  return sha256.slice(0, 12);
}
