// The one error type ingest lets escape. It lives apart from image.ts so the BMP decoder can
// throw it without an import cycle; image.ts re-exports it as the public name.

export type IngestErrorCode =
  | 'too_large'
  | 'empty'
  | 'unsupported_type'
  | 'not_media'
  | 'decompression_bomb'
  | 'corrupt'
  | 'timeout'
  | 'unreadable';

export const INGEST_ERROR_CODES: readonly IngestErrorCode[] = [
  'too_large',
  'empty',
  'unsupported_type',
  'not_media',
  'decompression_bomb',
  'corrupt',
  'timeout',
  'unreadable',
];

/**
 * A file that cannot be turned into pixels, with a machine code for grouping and a plain
 * message for analysts. The message never includes the file path: the caller knows it and
 * adds it, so the same message reads well in a table keyed by path.
 */
export class IngestError extends Error {
  readonly code: IngestErrorCode;

  constructor(code: IngestErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'IngestError';
    this.code = code;
  }
}

export function isIngestError(e: unknown): e is IngestError {
  return e instanceof IngestError;
}

/** First line of whatever was thrown: libvips messages run to several lines of internal detail. */
export function firstLine(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  const line = text.split('\n').find((l) => l.trim() !== '') ?? '';
  return line.trim() || 'unknown error';
}
