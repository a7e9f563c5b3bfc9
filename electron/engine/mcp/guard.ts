// `parallax mcp guard -- <command> [args...]`: a stdio MCP proxy. The MCP client launches
// the guard in place of the server; the guard launches the server, relays every message both
// ways, and scans every image (and audio) block in tool results, resource reads and prompts
// before the client sees it. See ./README.md.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { ParallaxConfig } from '../../../shared/config.js';
import { DEFAULT_BASELINE, Engine } from '../engine.js';
import { sniff } from '../ingest/sniff.js';
import { DEFAULT_MAX_MESSAGE_BYTES, LineReader } from './framing.js';
import { GuardCore, type FailMode, type GuardPolicy, type ReviewMode } from './guard-core.js';

export const GUARD_SOURCE = 'mcp-guard';
export const DEFAULT_SCAN_TIMEOUT_MS = 10_000;

export interface GuardOptions {
  dataDir: string;
  config?: ParallaxConfig;
  /** The real server: executable and arguments. */
  command: string;
  args: string[];
  review?: ReviewMode;
  fail?: FailMode;
  timeoutMs?: number;
  maxMessageBytes?: number;
  baseline?: string;
  /** Keep a copy of review/block items under <dataDir>/mcp-quarantine (default true). */
  quarantine?: boolean;
  /** Where the client is; the process's own stdio by default. */
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Open the engine here instead (tests); it is not closed by the guard. */
  engine?: Engine;
}

/** Server -> client messages the guard may hold back before it stops reading from the server. */
const SERVER_BACKLOG_PAUSE = 64;

/** Runs the guard until the server exits; resolves with the server's exit code. */
export async function runGuard(opts: GuardOptions): Promise<number> {
  const stdin = opts.stdin ?? process.stdin;
  const stdout = opts.stdout ?? process.stdout;
  const stderr = opts.stderr ?? process.stderr;
  const log = (line: string) => {
    try {
      stderr.write(`parallax mcp guard: ${line}\n`);
    } catch {
      // Nowhere left to say it.
    }
  };
  const policy: GuardPolicy = {
    review: opts.review ?? 'hold',
    fail: opts.fail ?? 'closed',
    timeoutMs: opts.timeoutMs ?? DEFAULT_SCAN_TIMEOUT_MS,
    maxMessageBytes: opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
  };
  const baseline = opts.baseline ?? DEFAULT_BASELINE;

  // The engine opens while the server starts; a scan that arrives first waits for it.
  const enginePromise = opts.engine ? Promise.resolve(opts.engine) : Engine.open({ dataDir: opts.dataDir, config: opts.config });
  enginePromise.catch(() => undefined);
  void warmUp(enginePromise, baseline, policy.fail, log);

  const quarantineDir = path.join(opts.dataDir, 'mcp-quarantine');
  let stopping = false;
  let child: ChildProcess;
  try {
    child = spawn(opts.command, opts.args, {
      stdio: ['pipe', 'pipe', opts.stderr ? 'pipe' : 'inherit'],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      windowsHide: true,
    });
  } catch (err) {
    log(`cannot start '${opts.command}': ${(err as Error).message}`);
    await closeEngine(opts.engine ? null : enginePromise);
    return 1;
  }
  if (opts.stderr && child.stderr) child.stderr.on('data', (d: Buffer) => stderr.write(d));

  const writeLine = (stream: Writable, line: Buffer): boolean => {
    stream.write(line);
    return stream.write('\n');
  };

  let clientGone = false;
  let clientPaused = false;
  const core = new GuardCore(
    policy,
    async (bytes, name, text) => (await enginePromise).scanBytes(bytes, { name, baseline, source: GUARD_SOURCE, text }),
    {
      toServer: (line) => {
        const to = child.stdin;
        if (!to || to.destroyed || !to.writable) return;
        if (!writeLine(to, line) && !clientPaused) {
          clientPaused = true;
          stdin.pause();
          to.once('drain', () => {
            clientPaused = false;
            stdin.resume();
          });
        }
      },
      toClient: (line) => {
        if (clientGone) return;
        if (writeLine(stdout, line)) return;
        return new Promise<void>((resolve) => {
          const done = () => {
            stdout.off('drain', done);
            stdout.off('close', done);
            resolve();
          };
          stdout.once('drain', done);
          stdout.once('close', done);
        });
      },
      log,
      onFlagged:
        opts.quarantine === false
          ? undefined
          : (item, bytes) => {
              // The analyst reviewing the verdict needs the media itself, which MCP never stored anywhere.
              const ext = sniff(bytes).format.replace(/[^a-z0-9]/g, '') || 'bin';
              fs.mkdirSync(quarantineDir, { recursive: true });
              const file = path.join(quarantineDir, `${item.sha256}.${ext}`);
              if (!fs.existsSync(file)) fs.writeFileSync(file, bytes);
            },
    },
  );

  const clientReader = new LineReader(
    policy.maxMessageBytes,
    (line) => core.clientLine(line),
    (o) => core.clientOversized(o),
  );
  const serverReader = new LineReader(
    policy.maxMessageBytes,
    (line) => {
      core.serverLine(line);
      // Scanning holds later server messages back; stop reading before they pile up.
      if (core.backlog > SERVER_BACKLOG_PAUSE && !child.stdout?.isPaused()) {
        child.stdout?.pause();
        void core.idle().then(() => child.stdout?.resume());
      }
    },
    (o) => core.serverOversized(o),
  );

  const onClientData = (chunk: Buffer) => guarded(log, 'client input', () => clientReader.push(chunk));
  const onClientEnd = () => {
    guarded(log, 'client input', () => clientReader.end());
    // The client hung up: let the server see end-of-input and exit on its own terms.
    child.stdin?.end();
  };
  stdin.on('data', onClientData);
  stdin.on('end', onClientEnd);
  stdin.on('error', (err) => log(`reading from the client failed: ${err.message}`));
  child.stdout?.on('data', (chunk: Buffer) => guarded(log, 'server output', () => serverReader.push(chunk)));
  child.stdout?.on('end', () => guarded(log, 'server output', () => serverReader.end()));
  child.stdin?.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') log(`writing to the server failed: ${err.message}`);
  });
  const onStdoutError = (err: NodeJS.ErrnoException) => {
    // The client is gone: nobody to relay to, so the server is asked to stop.
    if (!clientGone) log(`writing to the client failed (${err.code ?? err.message}); stopping the server`);
    clientGone = true;
    stop('SIGTERM');
  };
  stdout.on('error', onStdoutError);

  let killTimer: NodeJS.Timeout | undefined;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    killTimer = setTimeout(() => child.kill('SIGKILL'), 5000);
    killTimer.unref();
  };
  const signals: NodeJS.Signals[] = process.platform === 'win32' ? ['SIGINT', 'SIGTERM'] : ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const onSignal = (sig: NodeJS.Signals) => stop(sig);
  const ownProcess = !opts.stdin;
  if (ownProcess) for (const s of signals) process.on(s, onSignal);

  const code = await new Promise<number>((resolve) => {
    child.once('error', (err) => {
      log(`cannot start '${opts.command}': ${err.message}`);
      resolve(1);
    });
    child.once('close', (exitCode, signal) => {
      if (exitCode !== null) resolve(exitCode);
      else resolve(128 + (signal ? (os.constants.signals[signal] ?? 0) : 0));
    });
  });

  // Everything the server said before it exited still reaches the client, scanned.
  guarded(log, 'server output', () => serverReader.end());
  await core.idle();
  if (killTimer) clearTimeout(killTimer);
  if (ownProcess) for (const s of signals) process.off(s, onSignal);
  stdin.off('data', onClientData);
  stdin.off('end', onClientEnd);
  stdout.off('error', onStdoutError);
  // Stop reading from the client so that nothing keeps this process alive.
  stdin.pause();
  if (ownProcess && stdin === process.stdin) process.stdin.destroy();
  await closeEngine(opts.engine ? null : enginePromise);
  const s = core.stats;
  if (s.scanned + s.failedClosed + s.failedOpen > 0) {
    log(
      `server exited (${code}); ${s.scanned} scanned: ${s.allowed} allowed, ${s.blocked} blocked, ${s.held} held, ` +
        `${s.passedReview} passed for review; ${s.failedClosed + s.failedOpen} scan failures`,
    );
  }
  return code;
}

async function warmUp(
  enginePromise: Promise<Engine>,
  baseline: string,
  fail: FailMode,
  log: (line: string) => void,
): Promise<void> {
  const consequence =
    fail === 'closed' ? 'every image will be withheld (fail closed)' : 'every image will pass unscanned (--fail open)';
  let engine: Engine;
  try {
    engine = await enginePromise;
  } catch (err) {
    log(`the Parallax engine could not open (${(err as Error).message}); ${consequence}`);
    return;
  }
  const b = engine.store.findBaseline(baseline);
  if (!b || !engine.store.activeDetectorSet(b.id)) {
    log(`baseline '${baseline}' in ${engine.dataDir} has no trained detector set (run 'parallax train'); ${consequence}`);
    return;
  }
  try {
    await engine.encoder();
  } catch (err) {
    log(`the encoder could not load (${(err as Error).message}); ${consequence}`);
  }
}

async function closeEngine(enginePromise: Promise<Engine> | null): Promise<void> {
  if (!enginePromise) return;
  try {
    await (await enginePromise).close();
  } catch {
    // It never opened, or is already closed: nothing to release.
  }
}

/** Input handlers must never throw into the stream machinery: the proxy has to stay up. */
function guarded(log: (line: string) => void, what: string, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    log(`internal error on ${what}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
