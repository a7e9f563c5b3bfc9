// Running the bundled ffmpeg binary on untrusted media, safely.
//
// ffmpeg is a large C program reading attacker-controlled bytes, so it runs as a child process
// (a crash costs one item, not the engine) with:
//   - arguments as an array (no shell, so no quoting bugs);
//   - a wall-clock deadline, after which it is SIGKILLed;
//   - a cap on the bytes it may write to stdout, enforced while it runs;
//   - an explicit demuxer (`-f`) and a protocol whitelist chosen by the caller, so a file
//     cannot talk ffmpeg into opening a playlist, a URL or another local file (the HLS-in-AVI
//     class of file disclosure bugs relies on format probing and nested protocols);
//   - every exit awaited ('close'), so no zombie is left behind, and every live child killed
//     when this process exits, so no orphan is either.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import ffmpegInstaller from '@ffmpeg-installer/ffmpeg';

export interface FfmpegRun {
  /** Arguments after the binary; `-hide_banner -nostats` are prepended. */
  args: readonly string[];
  /** Bytes written to stdin (then stdin is closed); without it stdin is /dev/null. */
  stdin?: Uint8Array;
  timeoutMs: number;
  /** Stdout chunks as they arrive; return false to stop ffmpeg early (the run still resolves). */
  onStdout?: (chunk: Buffer) => boolean | void;
  /** Complete stderr lines as they arrive; return false to stop ffmpeg early. */
  onStderrLine?: (line: string) => boolean | void;
  signal?: AbortSignal;
}

export interface FfmpegResult {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  /** Why the run ended early, if it did. */
  stopped: 'timeout' | 'caller' | 'aborted' | null;
  /** The last STDERR_KEEP characters of stderr (ffmpeg's diagnostics). */
  stderr: string;
  ms: number;
}

const STDERR_KEEP = 16 * 1024;

/** Children still running; killed if this process exits so none outlives the engine. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

/**
 * Path of the ffmpeg binary: $PARALLAX_FFMPEG when set (a system ffmpeg, or a packaged app's
 * unpacked copy), else the one from @ffmpeg-installer. Inside an Electron asar archive the
 * binary cannot be executed, so the '.asar' path is rewritten to its '.asar.unpacked' twin.
 */
export function ffmpegPath(): string {
  const fromEnv = process.env.PARALLAX_FFMPEG;
  if (fromEnv) return fromEnv;
  const p = ffmpegInstaller.path.replace(`app.asar${pathSep()}`, `app.asar.unpacked${pathSep()}`);
  if (!existsSync(p)) throw new Error(`ffmpeg binary not found at ${p} (set PARALLAX_FFMPEG to an ffmpeg executable)`);
  return p;
}

function ffmpegPathOrEnv(): string {
  try {
    return ffmpegPath();
  } catch {
    return 'ffmpeg';
  }
}

function pathSep(): string {
  return process.platform === 'win32' ? '\\' : '/';
}

/**
 * Runs ffmpeg to completion (or until the deadline, the caller or the signal stops it) and
 * resolves once the process has exited and its pipes are closed. Rejects only when the binary
 * cannot be started; everything else is in the result for the caller to classify.
 */
export function runFfmpeg(run: FfmpegRun): Promise<FfmpegResult> {
  installExitHook();
  const started = performance.now();
  return new Promise((resolve, reject) => {
    if (run.signal?.aborted) {
      resolve({ code: null, stopped: 'aborted', stderr: '', ms: 0 });
      return;
    }
    let child: ChildProcess;
    try {
      child = spawn(ffmpegPath(), ['-hide_banner', '-nostats', ...run.args], {
        stdio: [run.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
        windowsHide: true,
      });
    } catch (err) {
      reject(new Error(`cannot start ffmpeg: ${(err as Error).message}`, { cause: err }));
      return;
    }
    live.add(child);

    let stopped: FfmpegResult['stopped'] = null;
    let stderr = '';
    let partialLine = '';
    const stop = (why: NonNullable<FfmpegResult['stopped']>) => {
      if (stopped) return;
      stopped = why;
      // SIGKILL, not SIGTERM: a decoder stuck in a loop on hostile input may not honour TERM.
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => stop('timeout'), run.timeoutMs);
    const onAbort = () => stop('aborted');
    run.signal?.addEventListener('abort', onAbort, { once: true });

    child.stdout!.on('data', (chunk: Buffer) => {
      if (stopped) return;
      if (run.onStdout?.(chunk) === false) stop('caller');
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => {
      stderr = (stderr + text).slice(-STDERR_KEEP);
      if (!run.onStderrLine || stopped) return;
      const lines = (partialLine + text).split(/\r?\n|\r/);
      partialLine = lines.pop() ?? '';
      for (const line of lines) {
        if (run.onStderrLine(line) === false) {
          stop('caller');
          break;
        }
      }
    });
    if (run.stdin && child.stdin) {
      // ffmpeg may exit before reading all of stdin (it saw enough, or gave up): the resulting
      // EPIPE is expected and must not become an unhandled 'error' event.
      child.stdin.on('error', () => undefined);
      child.stdin.end(Buffer.from(run.stdin.buffer, run.stdin.byteOffset, run.stdin.byteLength));
    }

    let settled = false;
    const finish = () => {
      settled = true;
      clearTimeout(timer);
      run.signal?.removeEventListener('abort', onAbort);
      live.delete(child);
    };
    child.on('error', (err) => {
      // A binary that cannot be executed never gets a pid; there is no process to wait for.
      if (settled || child.pid !== undefined) return;
      finish();
      reject(new Error(`cannot start ffmpeg (${ffmpegPathOrEnv()}): ${err.message}`, { cause: err }));
    });
    // 'close' (not 'exit') fires after the process is reaped AND its stdio streams have ended,
    // so no output is lost and nothing is left running.
    child.on('close', (code) => {
      if (settled) return;
      finish();
      if (partialLine && run.onStderrLine && !stopped) run.onStderrLine(partialLine);
      resolve({ code, stopped, stderr, ms: performance.now() - started });
    });
  });
}

/** Number of ffmpeg children this process has running now (tests assert it returns to 0). */
export function liveFfmpegProcesses(): number {
  return live.size;
}

/**
 * ffmpeg demuxer for a sniffed format (see ingest/sniff.ts). Naming the demuxer stops ffmpeg
 * from probing, which is what would let a crafted file be read as a playlist or script.
 */
export const DEMUXER_FOR_FORMAT: Readonly<Record<string, string>> = {
  wav: 'wav',
  mp3: 'mp3',
  flac: 'flac',
  ogg: 'ogg',
  opus: 'ogg',
  aac: 'aac',
  aiff: 'aiff',
  m4a: 'mov',
  mp4: 'mov',
  mov: 'mov',
  '3gp': 'mov',
  webm: 'matroska',
  mkv: 'matroska',
  avi: 'avi',
  flv: 'flv',
  asf: 'asf',
  mpeg: 'mpeg',
  mpegts: 'mpegts',
};

/** Containers whose index may sit at the end of the file: they need a seekable input, not a pipe. */
export const NEEDS_SEEKABLE_INPUT: ReadonlySet<string> = new Set(['mov']);

/** First line of ffmpeg's stderr that reads like an error, for messages. */
export function ffmpegErrorLine(stderr: string): string {
  const lines = stderr.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  const patterns = [/invalid data/i, /error/i, /could not|cannot|unable|failed/i, /no such|not found|matches no streams|does not contain/i];
  for (const p of patterns) {
    const hit = lines.find((l) => p.test(l));
    if (hit) return hit.replace(/^\[[^\]]+\]\s*/, '').slice(0, 200);
  }
  return (lines.at(-1) ?? 'no diagnostics').slice(0, 200);
}
