// The IPC surface of the main process as plain functions (no `electron` import), so the
// wiring is tested from Node: which senders are trusted, and the table of one handler per
// API channel that main.ts hands to ipcMain.handle.
import type { BridgeResult } from '../../shared/api/bridge.js';
import { APP_ORIGIN } from '../../shared/api/bridge.js';
import { ApiError } from '../../shared/api/contract.js';
import { API_METHODS, ipcChannel, type ApiMethod } from '../../shared/api/methods.js';

/**
 * Only the app's own page may call the API: not the chart frame (another origin, and it has
 * no business calling anything), not a page navigated to by accident, not devtools extensions.
 */
export function isTrustedSender(frameUrl: string | undefined | null): boolean {
  if (!frameUrl) return false;
  let url: URL;
  try {
    url = new URL(frameUrl);
  } catch {
    return false;
  }
  return `${url.protocol}//${url.host}` === APP_ORIGIN;
}

export type Call = (method: ApiMethod, payload: unknown) => Promise<unknown>;
export type IpcHandler = (senderUrl: string | undefined, payload: unknown) => Promise<BridgeResult>;

/** One handler per channel; every handler checks its sender and wraps errors in an envelope. */
export function createIpcHandlers(call: Call): Map<string, IpcHandler> {
  const table = new Map<string, IpcHandler>();
  for (const method of API_METHODS) {
    table.set(ipcChannel(method), async (senderUrl, payload) => {
      if (!isTrustedSender(senderUrl)) {
        return { ok: false, error: { code: 'unauthorized', message: `IPC ${method} refused: sender ${senderUrl ?? '(unknown)'} is not ${APP_ORIGIN}` } };
      }
      try {
        return { ok: true, result: await call(method, payload) };
      } catch (err) {
        const e = err instanceof ApiError ? err : new ApiError('internal', err instanceof Error ? err.message : String(err));
        return { ok: false, error: e.toBody() };
      }
    });
  }
  return table;
}
