// Parent side of engine-child.ts: forks it, relays progress, maps cancel to a message and then
// to a kill (a child inside one long fit or encoder batch cannot hear the message until it ends).
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ChildMessage, ChildRequest, RunRequest } from './engine-child.js';

const CANCEL_GRACE_MS = 1500;

export function childScript(): string {
  // Same extension as this module: .js from dist/, .ts when run from source through tsx.
  const self = fileURLToPath(import.meta.url);
  return self.replace(/child-runner\.(js|ts)$/, 'engine-child.$1');
}

export function runInEngineChild(
  request: RunRequest,
  opts: { signal?: AbortSignal; onProgress?: (fraction: number, detail: string) => void },
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = fork(childScript(), [], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      // Under Electron, process.execPath is the Electron binary: this makes it act as Node.
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
      execArgv: process.execArgv.filter((a) => !a.startsWith('--inspect')),
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    let settled = false;
    let killTimer: NodeJS.Timeout | undefined;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      if (killTimer) clearTimeout(killTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = () => {
      if (child.connected) child.send({ type: 'cancel' } satisfies ChildRequest);
      killTimer = setTimeout(() => child.kill('SIGKILL'), CANCEL_GRACE_MS);
    };
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('message', (msg: ChildMessage) => {
      if (msg.type === 'progress') opts.onProgress?.(msg.fraction, msg.detail);
      else if (msg.type === 'done') finish(() => resolve(msg.result));
      else if (msg.type === 'error') finish(() => reject(new Error(msg.message)));
    });
    child.on('error', (err) => finish(() => reject(err)));
    child.on('exit', (code, sig) => {
      if (opts.signal?.aborted) finish(() => reject(opts.signal!.reason instanceof Error ? opts.signal!.reason : new Error('cancelled')));
      const tail = stderr.trim().split('\n').filter((l) => !/Vulkan|BackendVk|^\s+at /.test(l)).slice(-5).join('\n');
      finish(() => reject(new Error(`the ${request.mode} process stopped (${sig ?? `exit ${code}`}) before it reported a result${tail ? `: ${tail}` : ''}`)));
    });
    child.send(request);
  });
}
