// The guard's message logic, apart from processes and pipes: what to do with each line that
// arrives from the client or from the server. Client -> server lines are forwarded at once
// (requests are remembered by id so their answers can be recognised); server -> client lines
// go through one ordered queue, because a response being scanned must not be overtaken by
// the messages the server sent after it.
import { createHash } from 'node:crypto';
import type { ItemError, ScanItem } from '../engine.js';
import { looksLikeRequest, recoverId, type JsonRpcId, type OversizedLine } from './framing.js';
import {
  ALL_SHAPES,
  blockedNotice,
  decodeBase64Strict,
  failureReason,
  findMedia,
  heldNotice,
  scanFailedNotice,
  SHAPES_BY_METHOD,
  topSignals,
  type MediaRef,
  type ResultShape,
} from './inspect.js';

export type ReviewMode = 'hold' | 'pass';
export type FailMode = 'open' | 'closed';

export interface GuardPolicy {
  /** What a 'review' verdict does to the block: withhold it (hold) or let it through (pass). Both queue it. */
  review: ReviewMode;
  /** When scanning fails or times out: withhold the block (closed) or let it through (open). */
  fail: FailMode;
  /** Per-block scan deadline. */
  timeoutMs: number;
  maxMessageBytes: number;
}

/** Scans one payload; `name` becomes the verdict's path (where it was met). */
export type Scanner = (bytes: Buffer, name: string, text?: string) => Promise<ScanItem | ItemError>;

export interface GuardSinks {
  toServer(line: Buffer): void;
  /** Resolves once the line is accepted (back-pressure). */
  toClient(line: Buffer): Promise<void> | void;
  log(line: string): void;
  /** Called for every review/block verdict with the bytes that were scanned. */
  onFlagged?(item: ScanItem, bytes: Buffer, ref: MediaRef): void;
}

export interface GuardStats {
  scanned: number;
  allowed: number;
  blocked: number;
  held: number;
  passedReview: number;
  failedClosed: number;
  failedOpen: number;
  droppedLines: number;
}

/** JSON-RPC error codes the guard answers with. */
export const RPC = { parseError: -32700, invalidRequest: -32600, internalError: -32603 } as const;

const MAX_PENDING = 100_000;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isId(v: unknown): v is JsonRpcId {
  return typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));
}

/** String and number ids are distinct in JSON-RPC: "1" does not answer 1. */
function idKey(id: JsonRpcId): string {
  return `${typeof id === 'string' ? 's' : 'n'}:${id}`;
}

interface PendingRequest {
  method: string;
  /** What was asked, for verdict names: "tools/call 'render'". */
  label: string;
}

function describeRequest(method: string, params: unknown): string {
  const p = isObj(params) ? params : {};
  if (method === 'tools/call' && typeof p.name === 'string') return `tools/call '${p.name}'`;
  if (method === 'prompts/get' && typeof p.name === 'string') return `prompts/get '${p.name}'`;
  if (method === 'resources/read' && typeof p.uri === 'string') return 'resources/read';
  return method;
}

export class GuardCore {
  private readonly pending = new Map<string, PendingRequest>();
  private chain: Promise<void> = Promise.resolve();
  private queued = 0;
  readonly stats: GuardStats = {
    scanned: 0,
    allowed: 0,
    blocked: 0,
    held: 0,
    passedReview: 0,
    failedClosed: 0,
    failedOpen: 0,
    droppedLines: 0,
  };

  constructor(
    private readonly policy: GuardPolicy,
    private readonly scanner: Scanner,
    private readonly sinks: GuardSinks,
  ) {}

  /** Server -> client messages waiting in the ordered queue (including the one in progress). */
  get backlog(): number {
    return this.queued;
  }

  /** Resolves when every server -> client message received so far has been written. */
  idle(): Promise<void> {
    return this.chain;
  }

  // ---- client -> server ----------------------------------------------------------------------

  clientLine(line: Buffer): void {
    const text = line.toString('utf8');
    if (text.trim() === '') return;
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch (err) {
      this.rejectClientText(text, text, `not valid JSON (${(err as Error).message})`, RPC.parseError);
      return;
    }
    if (!isObj(msg) && !Array.isArray(msg)) {
      this.drop('client', `a JSON ${msg === null ? 'null' : typeof msg} is not a JSON-RPC message`);
      return;
    }
    for (const m of Array.isArray(msg) ? msg : [msg]) {
      if (isObj(m) && typeof m.method === 'string' && isId(m.id)) this.remember(m.id, m.method, m.params);
    }
    // Verbatim: the guard never rewrites what the client says.
    this.sinks.toServer(line);
  }

  clientOversized(o: OversizedLine): void {
    const head = o.head.toString('utf8');
    this.rejectClientText(
      head,
      o.tail.toString('utf8'),
      `a message of ${o.bytes} bytes is over the guard's limit of ${this.policy.maxMessageBytes} bytes`,
      RPC.invalidRequest,
    );
  }

  private rejectClientText(head: string, tail: string, why: string, code: number): void {
    const id = recoverId(head, tail);
    if (id !== undefined && looksLikeRequest(head)) {
      this.drop('client', `request ${JSON.stringify(id)}: ${why}; answered with an error`);
      void this.sinks.toClient(errorLine(id, code, `Parallax guard: ${why}`));
    } else {
      this.drop('client', `${why}; dropped (no request id to answer)`);
    }
  }

  private remember(id: JsonRpcId, method: string, params: unknown): void {
    if (this.pending.size >= MAX_PENDING) {
      // Requests that never got an answer; the oldest go first.
      const oldest = this.pending.keys().next().value;
      if (oldest !== undefined) this.pending.delete(oldest);
    }
    this.pending.set(idKey(id), { method, label: describeRequest(method, params) });
  }

  // ---- server -> client ----------------------------------------------------------------------

  serverLine(line: Buffer): void {
    this.enqueue(() => this.handleServerLine(line));
  }

  serverOversized(o: OversizedLine): void {
    this.enqueue(async () => {
      const why = `the server sent a message of ${o.bytes} bytes, over the guard's limit of ${this.policy.maxMessageBytes} bytes`;
      await this.rejectServerText(o.head.toString('utf8'), o.tail.toString('utf8'), why, RPC.invalidRequest);
    });
  }

  private enqueue(task: () => Promise<void>): void {
    this.queued++;
    this.chain = this.chain
      .then(task)
      .catch((err: unknown) => this.sinks.log(`internal error handling a server message: ${describe(err)}`))
      .finally(() => {
        this.queued--;
      });
  }

  private async handleServerLine(line: Buffer): Promise<void> {
    const text = line.toString('utf8');
    if (text.trim() === '') return;
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch (err) {
      await this.rejectServerText(text, text, `the server sent a message that is not valid JSON (${(err as Error).message})`, RPC.parseError);
      return;
    }
    if (!isObj(msg) && !Array.isArray(msg)) {
      this.drop('server', `a JSON ${msg === null ? 'null' : typeof msg} is not a JSON-RPC message`);
      return;
    }
    const list: unknown[] = Array.isArray(msg) ? msg : [msg];
    let changed = false;
    try {
      for (const m of list) if (await this.inspectServerMessage(m)) changed = true;
    } catch (err) {
      // Never expected (every scan failure is handled per block); the policy still decides.
      const why = `could not inspect the server's message: ${describe(err)}`;
      if (this.policy.fail === 'open') {
        this.sinks.log(`${why}; passed through (--fail open)`);
        await this.sinks.toClient(line);
        return;
      }
      this.sinks.log(`${why}; responses withheld (fail closed)`);
      for (const m of list) {
        if (isObj(m) && isId(m.id) && typeof m.method !== 'string') {
          await this.sinks.toClient(errorLine(m.id, RPC.internalError, `Parallax guard: ${why}; withheld (fail closed)`));
        } else {
          await this.sinks.toClient(Buffer.from(JSON.stringify(m)));
        }
      }
      return;
    }
    // Untouched messages go out as the very bytes the server wrote.
    await this.sinks.toClient(changed ? Buffer.from(JSON.stringify(msg)) : line);
  }

  /** A server line that cannot be delivered: answer whoever is waiting on it, if anyone can be named. */
  private async rejectServerText(head: string, tail: string, why: string, code: number): Promise<void> {
    const id = recoverId(head, tail);
    if (id !== undefined && !looksLikeRequest(head) && this.pending.delete(idKey(id))) {
      this.drop('server', `response ${JSON.stringify(id)}: ${why}; the client gets an error instead`);
      await this.sinks.toClient(errorLine(id, RPC.internalError, `Parallax guard: ${why}`));
    } else if (id !== undefined && looksLikeRequest(head)) {
      this.drop('server', `request ${JSON.stringify(id)}: ${why}; answered with an error`);
      this.sinks.toServer(errorLine(id, code, `Parallax guard: ${why}`));
    } else {
      this.drop('server', `${why}; dropped`);
    }
  }

  /** Returns true when the message was altered. */
  private async inspectServerMessage(m: unknown): Promise<boolean> {
    if (!isObj(m) || typeof m.method === 'string' || !isId(m.id) || !('result' in m || 'error' in m)) return false;
    const key = idKey(m.id);
    const req = this.pending.get(key);
    this.pending.delete(key);
    if (!isObj(m.result)) return false;
    let shapes: readonly ResultShape[];
    let label: string;
    if (req) {
      shapes = SHAPES_BY_METHOD[req.method] ?? [];
      label = req.label;
    } else {
      // An answer to nothing the client asked (or asked twice): inspected as if it could be anything.
      shapes = ALL_SHAPES;
      label = 'unmatched response';
    }
    if (shapes.length === 0) return false;
    const refs = findMedia(m.result, shapes, label);
    let withheld = false;
    for (const ref of refs) if (await this.decide(ref)) withheld = true;
    if (withheld && shapes.includes('tool') && Array.isArray(m.result.content)) m.result.isError = true;
    return withheld;
  }

  /** Scans one payload and applies the policy. Returns true when the block was replaced. */
  private async decide(ref: MediaRef): Promise<boolean> {
    const bytes = ref.encoding === 'base64' ? decodeBase64Strict(ref.payload) : Buffer.from(ref.payload, 'utf8');
    if (!bytes) return this.failed(ref, 'the payload is not valid base64', null);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    let result: ScanItem | ItemError;
    try {
      result = await withTimeout(this.scanner(bytes, `mcp:${ref.where}`, ref.text), this.policy.timeoutMs);
    } catch (err) {
      return this.failed(ref, failureReason(ref.kind, describe(err)), sha256);
    }
    if (!('decision' in result)) return this.failed(ref, failureReason(ref.kind, result), sha256);
    const item = result;
    this.stats.scanned++;
    const summary = `${ref.where}: ${item.decision} (risk ${item.risk.toFixed(2)}; ${topSignals(item)}) sha256 ${item.sha256} verdict ${item.verdict_id}`;
    if (item.decision !== 'allow') {
      try {
        this.sinks.onFlagged?.(item, bytes, ref);
      } catch (err) {
        this.sinks.log(`could not keep a copy of ${item.sha256}: ${describe(err)}`);
      }
    }
    switch (item.decision) {
      case 'allow':
        this.stats.allowed++;
        return false;
      case 'block':
        this.stats.blocked++;
        this.sinks.log(`${summary}; withheld`);
        ref.replace(blockedNotice(ref.kind, item));
        return true;
      case 'review':
        if (this.policy.review === 'pass') {
          this.stats.passedReview++;
          this.sinks.log(`${summary}; passed (--review pass), queued for triage`);
          return false;
        }
        this.stats.held++;
        this.sinks.log(`${summary}; held for review`);
        ref.replace(heldNotice(ref.kind, item));
        return true;
    }
  }

  private failed(ref: MediaRef, reason: string, sha256: string | null): boolean {
    if (this.policy.fail === 'open') {
      this.stats.failedOpen++;
      this.sinks.log(`${ref.where}: scanning failed (${reason}); passed through unscanned (--fail open)`);
      return false;
    }
    this.stats.failedClosed++;
    this.sinks.log(`${ref.where}: scanning failed (${reason}); withheld (fail closed)`);
    ref.replace(scanFailedNotice(ref.kind, reason, sha256));
    return true;
  }

  private drop(side: 'client' | 'server', why: string): void {
    this.stats.droppedLines++;
    this.sinks.log(`from the ${side}: ${why}`);
  }
}

function errorLine(id: JsonRpcId, code: number, message: string): Buffer {
  return Buffer.from(JSON.stringify({ jsonrpc: '2.0', id, error: { code, message } }));
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  // The scan keeps running after the deadline; its verdict is still recorded, just too late to act on.
  p.catch(() => undefined);
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`scan timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
