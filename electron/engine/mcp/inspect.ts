// Finding the media inside MCP results, and what to put in place of a block the guard
// withholds. Pure functions over parsed JSON: no I/O, no engine, so every shape can be
// tested without a server.
import type { ItemError, ScanItem } from '../engine.js';
import { sniff } from '../ingest/sniff.js';

export type MediaKind = 'image' | 'audio' | 'video';

/** Which result shapes a response may carry, by the method of the request it answers. */
export type ResultShape = 'tool' | 'resource' | 'prompt';

export const SHAPES_BY_METHOD: Readonly<Record<string, readonly ResultShape[]>> = {
  'tools/call': ['tool'],
  // Task-augmented tool calls deliver the tool's result here.
  'tasks/result': ['tool'],
  'resources/read': ['resource'],
  'prompts/get': ['prompt'],
};

/** A response the guard cannot match to a request could answer any of them. */
export const ALL_SHAPES: readonly ResultShape[] = ['tool', 'resource', 'prompt'];

/** One media payload found in a result, and how to swap it for a notice. */
export interface MediaRef {
  /** Where it sits, for verdict names and logs: "tools/call 'render' content[1]". */
  where: string;
  kind: MediaKind;
  mime: string | null;
  /** The payload as it travels: base64 for blocks and blobs, plain text for text resources. */
  payload: string;
  encoding: 'base64' | 'text';
  /** The text blocks beside it in the same content array (a caption, for the CLIP agreement check). */
  text?: string;
  /** Replace the block with a notice (the shape of the replacement depends on the container). */
  replace(notice: Notice): void;
}

export interface Notice {
  text: string;
  meta: GuardMeta;
}

/** Attached as `_meta["parallax/guard"]` to every notice, for clients that want structure. */
export interface GuardMeta {
  action: 'blocked' | 'held' | 'scan_failed';
  kind: MediaKind;
  sha256: string | null;
  decision?: ScanItem['decision'];
  risk?: number;
  verdict_id?: number;
  reason?: string;
}

export const META_KEY = 'parallax/guard';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function kindOfMime(mime: unknown): MediaKind | null {
  if (typeof mime !== 'string') return null;
  const m = mime.trim().toLowerCase();
  if (m.startsWith('image/')) return 'image';
  if (m.startsWith('audio/')) return 'audio';
  if (m.startsWith('video/')) return 'video';
  return null;
}

/**
 * A blob's declared type is the server's word; its bytes are the truth. A PNG labelled
 * application/octet-stream is still an image the model may be shown, so undeclared blobs
 * are sniffed (only their first bytes are decoded for that).
 */
function kindOfBlob(mime: unknown, blob: string): MediaKind | null {
  const declared = kindOfMime(mime);
  if (declared) return declared;
  const head = Buffer.from(blob.slice(0, 16384).replace(/[^A-Za-z0-9+/]/g, '').slice(0, 16380), 'base64');
  const m = sniff(head).modality;
  return m === 'image' || m === 'audio' || m === 'video' ? m : null;
}

function textBlock(n: Notice): Obj {
  return { type: 'text', text: n.text, _meta: { [META_KEY]: n.meta } };
}

/**
 * A content block as found in tool results and prompt messages: image and audio blocks,
 * and embedded resources holding media. `set` swaps the block inside its container.
 */
function contentBlockMedia(block: unknown, where: string, set: (b: Obj) => void): MediaRef | null {
  if (!isObj(block)) return null;
  if ((block.type === 'image' || block.type === 'audio') && typeof block.data === 'string') {
    return {
      where,
      kind: block.type,
      mime: typeof block.mimeType === 'string' ? block.mimeType : null,
      payload: block.data,
      encoding: 'base64',
      replace: (n) => set(textBlock(n)),
    };
  }
  if (block.type === 'resource' && isObj(block.resource)) {
    const r = block.resource;
    const ref = resourceMedia(r, `${where} (resource ${typeof r.uri === 'string' ? r.uri : '?'})`, () => undefined);
    if (ref) ref.replace = (n) => set(textBlock(n));
    return ref;
  }
  return null;
}

/** A resource's contents ({uri, mimeType, blob | text}), embedded or read. */
function resourceMedia(r: Obj, where: string, set: (c: Obj) => void): MediaRef | null {
  const mime = typeof r.mimeType === 'string' ? r.mimeType : null;
  if (typeof r.blob === 'string') {
    const kind = kindOfBlob(mime, r.blob);
    if (!kind) return null;
    return { where, kind, mime, payload: r.blob, encoding: 'base64', replace: (n) => set(noticeResource(r, n)) };
  }
  // An SVG is an image that travels as text; it is scanned (or fails) like any other.
  const kind = kindOfMime(mime);
  if (kind && typeof r.text === 'string') {
    return { where, kind, mime, payload: r.text, encoding: 'text', replace: (n) => set(noticeResource(r, n)) };
  }
  return null;
}

function noticeResource(r: Obj, n: Notice): Obj {
  return { uri: r.uri, mimeType: 'text/plain', text: n.text, _meta: { [META_KEY]: n.meta } };
}

/**
 * Every media payload in `result`, for the shapes the answered request can produce.
 * `request` names what was asked ("tools/call 'render'") for verdict names.
 */
export function findMedia(result: unknown, shapes: readonly ResultShape[], request: string): MediaRef[] {
  if (!isObj(result)) return [];
  const out: MediaRef[] = [];
  if (shapes.includes('tool') && Array.isArray(result.content)) {
    const content = result.content;
    const text = besideText(content);
    content.forEach((block, i) => {
      const ref = contentBlockMedia(block, `${request} content[${i}]`, (b) => (content[i] = b));
      if (ref) out.push(withText(ref, text));
    });
  }
  if (shapes.includes('resource') && Array.isArray(result.contents)) {
    const contents = result.contents;
    contents.forEach((c, i) => {
      if (!isObj(c)) return;
      const label = typeof c.uri === 'string' ? c.uri : `contents[${i}]`;
      const ref = resourceMedia(c, `${request} ${label}`, (x) => (contents[i] = x));
      if (ref) out.push(ref);
    });
  }
  if (shapes.includes('prompt') && Array.isArray(result.messages)) {
    result.messages.forEach((msg, j) => {
      if (!isObj(msg)) return;
      const content = msg.content;
      if (Array.isArray(content)) {
        const text = besideText(content);
        content.forEach((block, i) => {
          const ref = contentBlockMedia(block, `${request} messages[${j}].content[${i}]`, (b) => (content[i] = b));
          if (ref) out.push(withText(ref, text));
        });
      } else {
        const ref = contentBlockMedia(content, `${request} messages[${j}]`, (b) => (msg.content = b));
        if (ref) out.push(ref);
      }
    });
  }
  return out;
}

/** The plain text blocks of a content array, joined (before any notice replaces a block). */
function besideText(content: unknown[]): string | undefined {
  const parts = content.filter((b): b is Obj => isObj(b) && b.type === 'text' && typeof b.text === 'string').map((b) => b.text as string);
  const text = parts.join('\n').trim();
  return text ? text.slice(0, 2000) : undefined;
}

function withText(ref: MediaRef, text: string | undefined): MediaRef {
  if (text !== undefined) ref.text = text;
  return ref;
}

/**
 * Decodes base64 the way a strict client would. Node's decoder skips characters it does
 * not know and stops at padding, so a crafted string could decode to one image here and
 * another elsewhere; anything but canonical base64 (line breaks aside) is refused.
 */
export function decodeBase64Strict(text: string): Buffer | null {
  const compact = text.replace(/[\r\n\t ]/g, '');
  if (compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) return null;
  return Buffer.from(compact, 'base64');
}

// ---- notices ---------------------------------------------------------------------------------

const KIND_WORD: Record<MediaKind, string> = { image: 'Image', audio: 'Audio', video: 'Video' };

export function topSignals(item: ScanItem, n = 3): string {
  const parts = Object.entries(item.signals)
    .filter(([, s]) => s.share > 0)
    .sort((a, b) => b[1].share - a[1].share)
    .slice(0, n)
    .map(([name, s]) => `${name} ${(s.share * 100).toFixed(0)}%`);
  return parts.length > 0 ? parts.join(', ') : 'none';
}

function verdictDetail(item: ScanItem): string {
  return `decision ${item.decision}, risk ${item.risk.toFixed(2)}; top signals: ${topSignals(item)}`;
}

export function blockedNotice(kind: MediaKind, item: ScanItem): Notice {
  return {
    text:
      `[Parallax guard] ${KIND_WORD[kind]} withheld: blocked by embedding anomaly detection (${verdictDetail(item)}). ` +
      `sha256 ${item.sha256}, verdict ${item.verdict_id}.`,
    meta: { action: 'blocked', kind, sha256: item.sha256, decision: item.decision, risk: item.risk, verdict_id: item.verdict_id },
  };
}

export function heldNotice(kind: MediaKind, item: ScanItem): Notice {
  return {
    text:
      `[Parallax guard] ${KIND_WORD[kind]} withheld: held for analyst review (${verdictDetail(item)}). ` +
      `It is in the Parallax triage queue; an analyst can release it. sha256 ${item.sha256}, verdict ${item.verdict_id}.`,
    meta: { action: 'held', kind, sha256: item.sha256, decision: item.decision, risk: item.risk, verdict_id: item.verdict_id },
  };
}

export function scanFailedNotice(kind: MediaKind, reason: string, sha256: string | null): Notice {
  return {
    text:
      `[Parallax guard] ${KIND_WORD[kind]} withheld: scanning failed (${reason}); the guard fails closed, so unscanned media is not passed on.` +
      (sha256 ? ` sha256 ${sha256}.` : ''),
    meta: { action: 'scan_failed', kind, sha256, reason },
  };
}

/** Why a scan of `kind` failed, in words an analyst can act on. */
export function failureReason(kind: MediaKind, error: ItemError | string): string {
  const why = typeof error === 'string' ? error : `${error.reason} [${error.code}]`;
  // Audio is scanned against the baseline's audio detector set; without one (or with audio
  // turned off) it is named as unsupported rather than as broken. Video is not scanned here yet.
  if (kind === 'video') return `video scanning is not available: this Parallax scans images and audio (engine said: ${why})`;
  if (kind === 'audio' && typeof error !== 'string' && ['no_detector_set', 'not_media', 'unsupported_type'].includes(error.code)) {
    return `audio scanning is not available: the baseline has no audio detector set, or audio is turned off (engine said: ${why})`;
  }
  return why;
}
