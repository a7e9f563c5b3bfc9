// Choosing an ONNX Runtime execution provider.
//
// onnxruntime-node bundles cpu and (on most platforms) webgpu; cuda is a separate download that
// this project's install skips (see .npmrc). 'auto' therefore has to cope with providers that are
// absent, not installed, or present but unusable (e.g. WebGPU on a headless server: no adapter).
// A failed provider surfaces as a rejected InferenceSession.create, which we catch; the reason is
// kept, shortened, so `status` can tell the user why the GPU is not in use.
import { readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';

import { installedPackage } from './paths.js';

export type EncoderDevice = 'auto' | 'cpu' | 'webgpu' | 'cuda';
export type ExecutionProvider = 'cpu' | 'webgpu' | 'cuda';

/** GPU providers that 'auto' tries, best first. */
const AUTO_ORDER: readonly Exclude<ExecutionProvider, 'cpu'>[] = ['webgpu', 'cuda'];

/**
 * GPU providers that already failed under 'auto' in this process, with the reason. A missing
 * adapter or driver does not appear mid-run, and each attempt costs time and, for WebGPU, a
 * native warning on stderr (Dawn probing Vulkan), so 'auto' does not retry them. Explicit
 * requests always retry.
 */
const autoFailures = new Map<ExecutionProvider, string>();

export interface CreateSessionOptions {
  /** CPU intra-op threads; 0 or undefined = one per core. */
  threads?: number;
  /**
   * Optional smoke run on a new GPU session (cpu sessions are not probed). A GPU provider can
   * initialise and still fail on the first real run (unsupported op, driver trouble); with a
   * probe, 'auto' falls back to cpu then
   * rather than during the user's first scan, and the first run's one-off cost is paid up front.
   */
  probe?: (session: ort.InferenceSession) => Promise<void>;
}

export interface CreatedSession {
  session: ort.InferenceSession;
  provider: ExecutionProvider;
  /** Why this provider: e.g. "auto: webgpu unavailable (no adapter found), using cpu". */
  note: string;
  threads: number;
}

export function defaultThreads(threads?: number): number {
  return threads && threads > 0 ? Math.floor(threads) : os.availableParallelism();
}

/**
 * Opens `model` (a path or the .onnx bytes) on the requested device.
 * 'auto' tries the installed GPU providers in order and falls back to cpu, saying why in `note`;
 * an explicit 'webgpu' or 'cuda' that cannot be used throws an error naming the provider and the reason.
 */
export async function createSession(model: string | Uint8Array, device: EncoderDevice, options: CreateSessionOptions = {}): Promise<CreatedSession> {
  const threads = defaultThreads(options.threads);
  const open = (provider: ExecutionProvider) => openOn(model, provider, threads, options.probe);

  if (device === 'cpu') {
    return { session: await open('cpu'), provider: 'cpu', note: `cpu requested (${threads} threads)`, threads };
  }
  if (device === 'webgpu' || device === 'cuda') {
    const unavailable = whyUnavailable(device);
    if (unavailable) throw new Error(`device '${device}' requested but the ${device} execution provider is ${unavailable}`);
    try {
      return { session: await open(device), provider: device, note: `${device} requested`, threads };
    } catch (err) {
      throw new Error(`device '${device}' requested but the ${device} execution provider failed: ${shortReason(err)}`, { cause: err });
    }
  }
  if (device !== 'auto') throw new Error(`unknown device '${String(device)}' (auto, cpu, webgpu, cuda)`);

  const skipped: string[] = [];
  for (const provider of AUTO_ORDER) {
    const unavailable = whyUnavailable(provider) ?? missingGpuRuntime(provider) ?? autoFailures.get(provider);
    if (unavailable) {
      skipped.push(`${provider} ${unavailable}`);
      continue;
    }
    try {
      const session = await open(provider);
      const note = skipped.length ? `auto: using ${provider} (${skipped.join(', ')})` : `auto: using ${provider}`;
      return { session, provider, note, threads };
    } catch (err) {
      const reason = `unavailable (${shortReason(err)})`;
      autoFailures.set(provider, reason);
      skipped.push(`${provider} ${reason}`);
    }
  }
  return { session: await open('cpu'), provider: 'cpu', note: `auto: ${skipped.join(', ')}, using cpu (${threads} threads)`, threads };
}

async function openOn(model: string | Uint8Array, provider: ExecutionProvider, threads: number, probe: CreateSessionOptions['probe']): Promise<ort.InferenceSession> {
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: [provider],
    graphOptimizationLevel: 'all',
    // One model, run sequentially: parallelism comes from intra-op threads (inside each Conv).
    executionMode: 'sequential',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
  };
  // Two calls because create() is overloaded per argument type, not typed for string | Uint8Array.
  const session = typeof model === 'string' ? await ort.InferenceSession.create(model, sessionOptions) : await ort.InferenceSession.create(model, sessionOptions);
  if (probe && provider !== 'cpu') {
    try {
      await probe(session);
    } catch (err) {
      await session.release().catch(() => undefined);
      throw err;
    }
  }
  return session;
}

/** Why a provider cannot even be tried on this install, or undefined if it can. */
function whyUnavailable(provider: ExecutionProvider): string | undefined {
  const backend = ort.listSupportedBackends().find((b) => b.name === provider);
  if (!backend) return `not available in onnxruntime-node on ${process.platform}/${process.arch}`;
  // Trying a provider whose library is absent fails anyway, after ONNX Runtime logs an error to
  // stderr; looking for the file first keeps 'auto' quiet on ordinary installs.
  if (!backend.bundled && !providerLibraryInstalled(provider)) return 'not installed (a separate onnxruntime-node download, skipped at install)';
  return undefined;
}

/**
 * On Linux WebGPU runs through Vulkan: without the loader Dawn finds no adapter, after printing
 * a native warning on stderr that nothing can suppress. 'auto' looks for the loader first, which
 * keeps it quiet and tells the user what to install; an explicit 'webgpu' still tries.
 */
function missingGpuRuntime(provider: ExecutionProvider): string | undefined {
  if (provider === 'webgpu' && process.platform === 'linux' && !findSharedLibrary('libvulkan.so.1')) {
    return "unavailable (no Vulkan loader: install libvulkan1, a Vulkan driver and libglvnd's libegl1/libgl1)";
  }
  return undefined;
}

/** Whether the dynamic loader can find `name` in the usual library folders or LD_LIBRARY_PATH. */
function findSharedLibrary(name: string): boolean {
  const dirs = [
    ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean),
    `/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`,
    `/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`,
    '/usr/lib64',
    '/usr/lib',
    '/lib64',
    '/lib',
    '/usr/local/lib',
  ];
  return dirs.some((dir) => {
    try {
      return readdirSync(dir).includes(name);
    } catch {
      return false;
    }
  });
}

/** Whether onnxruntime-node's install script put this provider's library next to its binding. */
function providerLibraryInstalled(provider: ExecutionProvider): boolean {
  try {
    const binDir = path.join(installedPackage('onnxruntime-node').dir, 'bin', 'napi-v6', process.platform, process.arch);
    return readdirSync(binDir).some((f) => f.includes(`onnxruntime_providers_${provider}`));
  } catch {
    return false;
  }
}

/** Known failure texts → what they mean; anything else is trimmed to its first useful line. */
const KNOWN_REASONS: readonly [RegExp, (m: RegExpMatchArray) => string][] = [
  [/Failed to get a WebGPU adapter:?\s*([^\n]*)/i, (m) => `no adapter found${m[1] ? `: ${m[1].trim()}` : ''}`],
  [/(lib[\w.+-]*\.(?:so|dylib|dll)[\w.]*)[^\n]*(?:cannot open shared object|No such file|not found)/i, (m) => `${m[1]} could not be loaded`],
  [/Failed to load (?:shared )?library/i, () => 'its shared library could not be loaded'],
];

/** A one-line reason from an ONNX Runtime error (which often starts with a C++ source location). */
export function shortReason(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  for (const [pattern, describe] of KNOWN_REASONS) {
    const m = text.match(pattern);
    if (m) return describe(m);
  }
  const line = text.split('\n').find((l) => l.trim()) ?? text;
  // "…/file.cc:136 <signature> <condition> was false. <message>" → "<message>"
  const afterCheck = line.split(/ was false\.\s*/).pop() ?? line;
  const cleaned = afterCheck.replace(/\S+\.(?:cc|cpp|h):\d+\s*/g, '').trim();
  return cleaned.length > 160 ? `${cleaned.slice(0, 157)}...` : cleaned || 'unknown error';
}
