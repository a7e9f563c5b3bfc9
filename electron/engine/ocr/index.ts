// Public entry point of the OCR package: text in images, and whether that text reads like
// instructions aimed at a model (an injection riding in on a picture).
import { PaddleOcr, recogniseText, type OcrResult } from './paddle.js';
import { scoreInstructionLikeness, type InstructionScore } from './instructions.js';

export { PaddleOcr, recogniseText, ctcGreedy, defaultOcrModelDir, OCR_DEFAULTS, type OcrLine, type OcrOptions, type OcrResult } from './paddle.js';
export { CATEGORY_WEIGHTS, compact, INSTRUCTION_FLAG_THRESHOLD, scoreInstructionLikeness, type CueCategory, type InstructionCue, type InstructionScore } from './instructions.js';

export interface ImageTextReport {
  ocr: OcrResult;
  instructions: InstructionScore;
}

/** OCR, then instruction-likeness of everything read (with a given engine, or the shared default one). */
export async function analyseImageText(rgb: Uint8Array, width: number, height: number, engine?: PaddleOcr): Promise<ImageTextReport> {
  const ocr = engine ? await engine.recognise(rgb, width, height) : await recogniseText(rgb, width, height);
  return { ocr, instructions: scoreInstructionLikeness(ocr.text) };
}
