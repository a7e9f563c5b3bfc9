// Messages between the Electron main process and the utility process hosting the engine.
import type { ApiErrorBody } from '../../shared/api/contract.js';
import type { ApiMethod } from '../../shared/api/methods.js';

export type HostRequest =
  | { type: 'call'; id: number; method: ApiMethod; payload: unknown }
  | { type: 'media'; id: number; sha256: string; variant: 'thumb' | 'full' }
  | { type: 'shutdown'; id: number };

export type HostReply =
  | { type: 'result'; id: number; ok: true; result: unknown }
  | { type: 'result'; id: number; ok: false; error: ApiErrorBody }
  | { type: 'media'; id: number; ok: true; mime: string; bytes: Uint8Array }
  | { type: 'media'; id: number; ok: false; error: ApiErrorBody }
  | { type: 'event'; event: unknown };
