// Newline-delimited JSON framing for the MCP stdio transport, built for a proxy: lines are
// handed over as the exact bytes that arrived (so an untouched message can be forwarded
// verbatim), and a line longer than the cap is never held in memory. Only its first and
// last few KiB are kept, which is where a JSON-RPC id can be found.

/** Default cap on one message, either direction. Images arrive base64-encoded inside JSON. */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

const KEEP = 4096;

export interface OversizedLine {
  /** The first bytes of the line (at most 4 KiB). */
  head: Buffer;
  /** The last bytes of the line (at most 4 KiB), without the newline. */
  tail: Buffer;
  /** The whole line's length in bytes. */
  bytes: number;
}

export class LineReader {
  private chunks: Buffer[] = [];
  private length = 0;
  /** Set while discarding the rest of a line that went over the cap. */
  private oversize: { head: Buffer; tail: Buffer; bytes: number } | null = null;

  constructor(
    private readonly maxBytes: number,
    private readonly onLine: (line: Buffer) => void,
    private readonly onOversized: (line: OversizedLine) => void,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl === -1 ? chunk.length : nl;
      this.take(chunk.subarray(start, end));
      if (nl === -1) return;
      this.finishLine();
      start = nl + 1;
    }
  }

  /** The stream ended: a last line without a newline still counts. */
  end(): void {
    if (this.length > 0 || this.oversize) this.finishLine();
  }

  private take(part: Buffer): void {
    if (part.length === 0) return;
    if (this.oversize) {
      this.oversize.bytes += part.length;
      this.oversize.tail = keepTail(this.oversize.tail, part);
      return;
    }
    if (this.length + part.length > this.maxBytes) {
      const buffered = Buffer.concat([...this.chunks, part]);
      this.oversize = {
        head: Buffer.from(buffered.subarray(0, KEEP)),
        tail: Buffer.from(buffered.subarray(Math.max(0, buffered.length - KEEP))),
        bytes: buffered.length,
      };
      this.chunks = [];
      this.length = 0;
      return;
    }
    // Copy: the stream may reuse the chunk's memory once this callback returns.
    this.chunks.push(Buffer.from(part));
    this.length += part.length;
  }

  private finishLine(): void {
    if (this.oversize) {
      const o = this.oversize;
      this.oversize = null;
      this.onOversized({ head: o.head, tail: stripCr(o.tail), bytes: o.bytes });
      return;
    }
    const line = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.length);
    this.chunks = [];
    this.length = 0;
    this.onLine(stripCr(line));
  }
}

function keepTail(tail: Buffer, part: Buffer): Buffer {
  if (part.length >= KEEP) return Buffer.from(part.subarray(part.length - KEEP));
  const joined = Buffer.concat([tail, part]);
  return joined.length > KEEP ? Buffer.from(joined.subarray(joined.length - KEEP)) : joined;
}

function stripCr(line: Buffer): Buffer {
  return line.length > 0 && line[line.length - 1] === 0x0d ? line.subarray(0, line.length - 1) : line;
}

export type JsonRpcId = string | number;

const ID_VALUE = String.raw`("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)`;
// A top-level "id" is either the first key or the last one (the SDK writes it last); keys
// in between could belong to nested objects, so only those two positions are trusted.
const ID_AT_END = new RegExp(String.raw`"id"\s*:\s*${ID_VALUE}\s*\}\s*$`);
const ID_AT_START = new RegExp(String.raw`^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*${ID_VALUE}`);

/**
 * Best-effort recovery of a JSON-RPC id from text that could not be parsed (cut short,
 * malformed, or too large to read). Returns undefined when no id can be trusted.
 */
export function recoverId(head: string, tail: string = head): JsonRpcId | undefined {
  const m = ID_AT_END.exec(tail) ?? ID_AT_START.exec(head);
  if (!m) return undefined;
  try {
    const v = JSON.parse(m[1]) as unknown;
    return typeof v === 'string' || typeof v === 'number' ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the unparsable text looks like a request or notification (has a method) rather than a response. */
export function looksLikeRequest(head: string): boolean {
  return /"method"\s*:/.test(head) && !/^\s*\{\s*"(?:result|error)"\s*:/.test(head);
}
