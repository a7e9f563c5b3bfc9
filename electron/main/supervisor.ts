// Supervises the utility process that hosts the engine: relays calls and media requests,
// forwards events, and restarts it with back-off when it dies (in-flight calls fail with a
// clear message; jobs resume from their persisted state when the engine comes back). No
// `electron` import: main.ts passes in how to fork, so tests drive a fake child.
import { ApiError } from '../../shared/api/contract.js';
import type { ApiMethod } from '../../shared/api/methods.js';
import type { HostReply, HostRequest } from '../utility/protocol.js';

export interface ChildLike {
  postMessage(msg: HostRequest): void;
  on(event: 'message', cb: (msg: HostReply) => void): void;
  on(event: 'exit', cb: (code: number) => void): void;
  kill(): void;
}

export interface SupervisorOptions {
  fork(): ChildLike;
  onEvent(event: unknown): void;
  log?(line: string): void;
  /** Back-off after each crash: 0.5 s, 1 s, 2 s … up to maxDelayMs. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** A child that lived this long resets the back-off. */
  healthyAfterMs?: number;
  setTimer?(fn: () => void, ms: number): unknown;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

export class Supervisor {
  private child: ChildLike | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private crashes = 0;
  private startedAt = 0;
  private stopped = false;
  private restartTimer = false;

  constructor(private readonly opts: SupervisorOptions) {}

  start(): void {
    if (this.stopped) return;
    this.restartTimer = false;
    const child = this.opts.fork();
    this.child = child;
    this.startedAt = Date.now();
    child.on('message', (msg) => this.onMessage(msg));
    child.on('exit', (code) => this.onExit(child, code));
  }

  get restarts(): number {
    return this.crashes;
  }

  call(method: ApiMethod, payload: unknown): Promise<unknown> {
    return this.request({ type: 'call', id: 0, method, payload });
  }

  media(sha256: string, variant: 'thumb' | 'full'): Promise<{ mime: string; bytes: Uint8Array }> {
    return this.request({ type: 'media', id: 0, sha256, variant }) as Promise<{ mime: string; bytes: Uint8Array }>;
  }

  stop(): void {
    this.stopped = true;
    this.child?.postMessage({ type: 'shutdown', id: 0 });
    this.child = null;
    this.failAll('the app is closing');
  }

  private request(msg: HostRequest): Promise<unknown> {
    if (!this.child) return Promise.reject(new ApiError('unavailable', 'the engine is restarting; try again in a moment'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child!.postMessage({ ...msg, id } as HostRequest);
    });
  }

  private onMessage(msg: HostReply): void {
    if (msg.type === 'event') {
      this.opts.onEvent(msg.event);
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    if (msg.ok) p.resolve(msg.type === 'media' ? { mime: msg.mime, bytes: msg.bytes } : msg.result);
    else p.reject(new ApiError(msg.error.code, msg.error.message));
  }

  private onExit(child: ChildLike, code: number): void {
    if (child !== this.child) return;
    this.child = null;
    this.failAll(`the engine process stopped (exit ${code}) while answering; it is being restarted`);
    if (this.stopped) return;
    const lived = Date.now() - this.startedAt;
    if (lived >= (this.opts.healthyAfterMs ?? 60_000)) this.crashes = 0;
    const delay = Math.min(this.opts.maxDelayMs ?? 30_000, (this.opts.baseDelayMs ?? 500) * 2 ** this.crashes);
    this.crashes++;
    this.opts.log?.(`engine process exited with ${code}; restarting in ${delay} ms (restart ${this.crashes})`);
    this.opts.onEvent({ type: 'changed', what: 'queue' });
    this.restartTimer = true;
    (this.opts.setTimer ?? setTimeout)(() => this.start(), delay);
  }

  private failAll(message: string): void {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(new ApiError('unavailable', message));
    }
  }
}
