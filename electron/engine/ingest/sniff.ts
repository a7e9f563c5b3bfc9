// Content sniffing: what a file really is, judged from its bytes alone.
//
// File names are attacker-controlled and often simply wrong (a PNG saved as .jpg is common), so
// the decoder is chosen from magic numbers. Recognising non-image types matters too: an analyst
// told "audio (WAV) is not an image" or "looks like a PDF document" can act on it, whereas
// "corrupt JPEG" would send them looking for damage that is not there.
//
// Only the first few KiB are looked at, so sniffing costs the same for any file size.

import type { Modality } from '../../../shared/types.js';

export interface SniffResult {
  /** Best-guess MIME type; application/octet-stream when nothing matched. */
  mime: string;
  /** Short machine name: 'jpeg', 'png', 'wav', 'pdf', 'text', 'unknown', … */
  format: string;
  /** Which kind of media it is, or null for documents, archives, text and unknown data. */
  modality: Modality | null;
  /** Human name for messages: 'JPEG', 'WAV', 'PDF document', 'plain text', … */
  label: string;
}

/** How much of the file the text heuristic and the container probes look at. */
const SNIFF_WINDOW = 8192;

export function sniff(bytes: Uint8Array): SniffResult {
  if (bytes.length === 0) return result('application/x-empty', 'empty', null, 'empty file');
  return sniffImage(bytes) ?? sniffAudioVideo(bytes) ?? sniffOther(bytes) ?? sniffText(bytes) ?? UNKNOWN;
}

const UNKNOWN: SniffResult = result('application/octet-stream', 'unknown', null, 'unrecognised binary data');

function result(mime: string, format: string, modality: Modality | null, label: string): SniffResult {
  return { mime, format, modality, label };
}

// ---------------------------------------------------------------------------------------------
// Images

function sniffImage(b: Uint8Array): SniffResult | null {
  if (startsWith(b, [0xff, 0xd8, 0xff])) return result('image/jpeg', 'jpeg', 'image', 'JPEG');
  if (startsWith(b, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return result('image/png', 'png', 'image', 'PNG');
  if (ascii(b, 0, 6) === 'GIF87a' || ascii(b, 0, 6) === 'GIF89a') return result('image/gif', 'gif', 'image', 'GIF');
  if (ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 4) === 'WEBP') return result('image/webp', 'webp', 'image', 'WebP');
  if (looksLikeBmp(b)) return result('image/bmp', 'bmp', 'image', 'BMP');
  if (startsWith(b, [0x49, 0x49, 0x2a, 0x00]) || startsWith(b, [0x4d, 0x4d, 0x00, 0x2a])) {
    return result('image/tiff', 'tiff', 'image', 'TIFF');
  }
  if (startsWith(b, [0x49, 0x49, 0x2b, 0x00]) || startsWith(b, [0x4d, 0x4d, 0x00, 0x2b])) {
    return result('image/tiff', 'bigtiff', 'image', 'BigTIFF');
  }
  const ftyp = sniffFtyp(b);
  if (ftyp) return ftyp;
  // Formats the bundled libvips cannot decode; recognised so the error says so plainly.
  if (startsWith(b, [0xff, 0x0a]) || startsWith(b, [0, 0, 0, 0x0c, 0x4a, 0x58, 0x4c, 0x20, 0x0d, 0x0a, 0x87, 0x0a])) {
    return result('image/jxl', 'jxl', 'image', 'JPEG XL');
  }
  if (startsWith(b, [0, 0, 0, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a]) || startsWith(b, [0xff, 0x4f, 0xff, 0x51])) {
    return result('image/jp2', 'jp2', 'image', 'JPEG 2000');
  }
  if (ascii(b, 0, 4) === '8BPS') return result('image/vnd.adobe.photoshop', 'psd', 'image', 'Photoshop PSD');
  return null;
}

/**
 * "BM" alone is two printable letters, so a text file could start with it; requiring a known
 * DIB header size keeps such text from being handed to the BMP decoder.
 */
function looksLikeBmp(b: Uint8Array): boolean {
  if (b.length < 18 || b[0] !== 0x42 || b[1] !== 0x4d) return false;
  const dibSize = u32le(b, 14);
  return [12, 16, 40, 52, 56, 64, 108, 124].includes(dibSize);
}

/**
 * ISO base media files (MP4, MOV, M4A, HEIF, AVIF) share the 'ftyp' box; only the brands tell
 * a still image from a film or a song.
 */
function sniffFtyp(b: Uint8Array): SniffResult | null {
  if (b.length < 12 || ascii(b, 4, 4) !== 'ftyp') return null;
  const major = ascii(b, 8, 4);
  const boxEnd = Math.min(u32be(b, 0), b.length, SNIFF_WINDOW);
  const brands = [major];
  for (let off = 16; off + 4 <= boxEnd; off += 4) brands.push(ascii(b, off, 4));

  if (brands.includes('avif') || brands.includes('avis')) return result('image/avif', 'avif', 'image', 'AVIF');
  const heicBrands = ['heic', 'heix', 'heim', 'heis', 'hevc', 'hevx', 'hevm', 'hevs'];
  if (heicBrands.includes(major) || ((major === 'mif1' || major === 'msf1') && brands.some((x) => heicBrands.includes(x)))) {
    return result('image/heic', 'heic', 'image', 'HEIC');
  }
  if (major === 'mif1' || major === 'msf1') return result('image/heif', 'heif', 'image', 'HEIF');
  if (major === 'crx ') return result('image/x-canon-cr3', 'cr3', 'image', 'Canon CR3 raw');
  if (['M4A ', 'M4B ', 'M4P ', 'F4A ', 'F4B '].includes(major)) return result('audio/mp4', 'm4a', 'audio', 'M4A');
  if (major === 'qt  ') return result('video/quicktime', 'mov', 'video', 'QuickTime MOV');
  if (major.startsWith('3gp') || major.startsWith('3g2')) return result('video/3gpp', '3gp', 'video', '3GP');
  // isom, iso2…iso9, mp41, mp42, avc1, dash, M4V, …: an MP4 may hold only audio, but without
  // parsing the track boxes video is the likelier and the safer guess for an error message.
  return result('video/mp4', 'mp4', 'video', 'MP4');
}

// ---------------------------------------------------------------------------------------------
// Audio and video

function sniffAudioVideo(b: Uint8Array): SniffResult | null {
  if (ascii(b, 0, 4) === 'RIFF') {
    const kind = ascii(b, 8, 4);
    if (kind === 'WAVE') return result('audio/wav', 'wav', 'audio', 'WAV');
    if (kind === 'AVI ') return result('video/x-msvideo', 'avi', 'video', 'AVI');
  }
  if (ascii(b, 0, 4) === 'FORM' && (ascii(b, 8, 4) === 'AIFF' || ascii(b, 8, 4) === 'AIFC')) {
    return result('audio/aiff', 'aiff', 'audio', 'AIFF');
  }
  if (ascii(b, 0, 4) === 'fLaC') return result('audio/flac', 'flac', 'audio', 'FLAC');
  if (ascii(b, 0, 4) === 'OggS') return sniffOgg(b);
  if (startsWith(b, [0x1a, 0x45, 0xdf, 0xa3])) {
    // The EBML DocType string sits within the first few dozen bytes of the header.
    return asciiWindow(b, 64).includes('webm')
      ? result('video/webm', 'webm', 'video', 'WebM')
      : result('video/x-matroska', 'mkv', 'video', 'Matroska');
  }
  if (ascii(b, 0, 3) === 'FLV' && b[3] === 1) return result('video/x-flv', 'flv', 'video', 'FLV');
  if (startsWith(b, [0x30, 0x26, 0xb2, 0x75, 0x8e, 0x66, 0xcf, 0x11])) return result('video/x-ms-asf', 'asf', 'video', 'ASF/WMV');
  if (startsWith(b, [0x00, 0x00, 0x01, 0xba])) return result('video/mpeg', 'mpeg', 'video', 'MPEG program stream');
  if (b.length >= 377 && b[0] === 0x47 && b[188] === 0x47 && b[376] === 0x47) return result('video/mp2t', 'mpegts', 'video', 'MPEG transport stream');
  if (ascii(b, 0, 3) === 'ID3') return result('audio/mpeg', 'mp3', 'audio', 'MP3');
  if (looksLikeAdts(b)) return result('audio/aac', 'aac', 'audio', 'AAC');
  if (looksLikeMpegAudio(b)) return result('audio/mpeg', 'mp3', 'audio', 'MP3');
  if (ascii(b, 0, 4) === 'MThd') return result('audio/midi', 'midi', 'audio', 'MIDI');
  return null;
}

function sniffOgg(b: Uint8Array): SniffResult {
  // The first page's first packet names the codec; it starts right after the segment table.
  const segments = b.length > 26 ? b[26] : 0;
  const packet = asciiWindow(b.subarray(Math.min(27 + segments, b.length)), 8);
  if (packet.startsWith('\x80theora')) return result('video/ogg', 'ogg', 'video', 'Ogg (Theora video)');
  if (packet.startsWith('OpusHead')) return result('audio/ogg', 'opus', 'audio', 'Ogg Opus');
  if (packet.startsWith('\x7fFLAC')) return result('audio/ogg', 'ogg', 'audio', 'Ogg FLAC');
  return result('audio/ogg', 'ogg', 'audio', 'Ogg');
}

// MPEG audio frame sync is only 11 bits, so random data matches it about once in 2,000 starts.
// Requiring a fully valid header AND a second valid header exactly one frame later (when the
// file is long enough to hold it) makes a false "MP3" for random bytes vanishingly rare.
const MPEG_BITRATES: Record<string, readonly number[]> = {
  V1L1: [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
  V1L2: [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
  V1L3: [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
  V2L1: [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
  V2L23: [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
};

function mpegFrameLength(b: Uint8Array, off: number): number {
  if (off + 4 > b.length || b[off] !== 0xff || (b[off + 1] & 0xe0) !== 0xe0) return 0;
  const version = (b[off + 1] >> 3) & 3; // 0: MPEG-2.5, 1: reserved, 2: MPEG-2, 3: MPEG-1
  const layer = (b[off + 1] >> 1) & 3; // 1: III, 2: II, 3: I, 0: reserved
  const bitrateIndex = b[off + 2] >> 4;
  const rateIndex = (b[off + 2] >> 2) & 3;
  const padding = (b[off + 2] >> 1) & 1;
  if (version === 1 || layer === 0 || bitrateIndex === 0 || bitrateIndex === 15 || rateIndex === 3) return 0;
  const v1 = version === 3;
  const table = v1 ? (layer === 3 ? 'V1L1' : layer === 2 ? 'V1L2' : 'V1L3') : layer === 3 ? 'V2L1' : 'V2L23';
  const bitrate = MPEG_BITRATES[table][bitrateIndex] * 1000;
  const sampleRate = [44100, 48000, 32000][rateIndex] / (v1 ? 1 : version === 2 ? 2 : 4);
  if (layer === 3) return (Math.floor((12 * bitrate) / sampleRate) + padding) * 4;
  const perFrame = layer === 1 && !v1 ? 72 : 144;
  return Math.floor((perFrame * bitrate) / sampleRate) + padding;
}

function looksLikeMpegAudio(b: Uint8Array): boolean {
  const length = mpegFrameLength(b, 0);
  if (length < 4) return false;
  if (length + 4 > b.length) return true;
  return mpegFrameLength(b, length) > 0;
}

function looksLikeAdts(b: Uint8Array): boolean {
  // ADTS: 12-bit sync, layer bits 00, valid sampling index, frame length covering the header.
  if (b.length < 7 || b[0] !== 0xff || (b[1] & 0xf6) !== 0xf0) return false;
  const samplingIndex = (b[2] >> 2) & 0x0f;
  const frameLength = ((b[3] & 0x03) << 11) | (b[4] << 3) | (b[5] >> 5);
  if (samplingIndex > 12 || frameLength < 7) return false;
  if (frameLength + 2 > b.length) return true;
  return b[frameLength] === 0xff && (b[frameLength + 1] & 0xf6) === 0xf0;
}

// ---------------------------------------------------------------------------------------------
// Documents, archives, executables

function sniffOther(b: Uint8Array): SniffResult | null {
  if (ascii(b, 0, 5) === '%PDF-') return result('application/pdf', 'pdf', null, 'PDF document');
  if (ascii(b, 0, 2) === 'PK' && [0x0304, 0x0506, 0x0708].includes(((b[2] ?? 0) << 8) | (b[3] ?? 0))) {
    return result('application/zip', 'zip', null, 'ZIP archive (or an Office/JAR file built on ZIP)');
  }
  if (startsWith(b, [0x1f, 0x8b])) return result('application/gzip', 'gzip', null, 'gzip-compressed data');
  if (ascii(b, 0, 3) === 'BZh' && b.length >= 4 && b[3] >= 0x31 && b[3] <= 0x39) return result('application/x-bzip2', 'bzip2', null, 'bzip2-compressed data');
  if (startsWith(b, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return result('application/x-xz', 'xz', null, 'xz-compressed data');
  if (startsWith(b, [0x28, 0xb5, 0x2f, 0xfd])) return result('application/zstd', 'zstd', null, 'zstd-compressed data');
  if (startsWith(b, [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c])) return result('application/x-7z-compressed', '7z', null, '7-Zip archive');
  if (ascii(b, 0, 6) === 'Rar!\x1a\x07') return result('application/vnd.rar', 'rar', null, 'RAR archive');
  if (startsWith(b, [0x7f, 0x45, 0x4c, 0x46])) return result('application/x-elf', 'elf', null, 'ELF executable');
  if (ascii(b, 0, 2) === 'MZ' && b.length >= 64) {
    const pe = u32le(b, 0x3c);
    if (pe + 4 <= b.length && ascii(b, pe, 4) === 'PE\0\0') return result('application/vnd.microsoft.portable-executable', 'exe', null, 'Windows executable');
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Text

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Text is "valid UTF-8 with no NUL and no stray control characters" within the window. Binary
 * data almost never survives strict UTF-8 validation over a few KiB, and the control-character
 * rule catches the short binary files that do.
 */
function sniffText(b: Uint8Array): SniffResult | null {
  let window = b.subarray(0, SNIFF_WINDOW);
  if (startsWith(window, [0xef, 0xbb, 0xbf])) window = window.subarray(3);
  let text: string;
  try {
    // stream: true tolerates a multi-byte character cut in half at the window's end.
    text = utf8.decode(window, { stream: window.length < b.length });
  } catch {
    return null;
  }
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const allowedControl = c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d || c === 0x1b;
    if ((c < 0x20 && !allowedControl) || c === 0x7f) return null;
  }
  const head = text.trimStart().slice(0, 1024).toLowerCase();
  // HTML first: a web page with an inline <svg> is still a web page.
  if (head.startsWith('<!doctype html') || /^<(html|head|body)[\s>]/.test(head)) return result('text/html', 'html', null, 'HTML document');
  if (head.startsWith('<') && /<svg[\s>]/.test(text.toLowerCase())) return result('image/svg+xml', 'svg', 'image', 'SVG vector image');
  if (head.startsWith('<?xml')) return result('application/xml', 'xml', null, 'XML document');
  if (head.startsWith('{') || head.startsWith('[')) return result('application/json', 'json', null, 'JSON text');
  return result('text/plain', 'text', null, 'plain text');
}

// ---------------------------------------------------------------------------------------------
// Byte helpers: every read is bounds-checked so a short file simply fails to match.

function startsWith(b: Uint8Array, sig: readonly number[]): boolean {
  if (b.length < sig.length) return false;
  for (let i = 0; i < sig.length; i++) if (b[i] !== sig[i]) return false;
  return true;
}

function ascii(b: Uint8Array, off: number, len: number): string {
  if (off < 0 || off + len > b.length) return '';
  let s = '';
  for (let i = off; i < off + len; i++) s += String.fromCharCode(b[i]);
  return s;
}

function asciiWindow(b: Uint8Array, len: number): string {
  return ascii(b, 0, Math.min(len, b.length));
}

function u32le(b: Uint8Array, off: number): number {
  if (off + 4 > b.length) return 0;
  return (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0;
}

function u32be(b: Uint8Array, off: number): number {
  if (off + 4 > b.length) return 0;
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}
