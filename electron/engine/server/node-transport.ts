// The HTTP/WebSocket transport for Node callers of a running `parallax serve` (scripts, tests):
// the same contract and client the renderer uses, over fetch and the `ws` package.
import WebSocket from 'ws';
import { errorFromBody, type Transport } from '../../../shared/api/client.js';
import { ApiError } from '../../../shared/api/contract.js';
import type { ApiMethod } from '../../../shared/api/methods.js';

export function nodeHttpTransport(opts: { origin: string; token: string }): Transport & { close(): void } {
  const listeners = new Set<(e: unknown) => void>();
  let ws: WebSocket | null = null;
  let closed = false;
  let opened: Promise<void> | null = null;
  const connect = (): Promise<void> => {
    if (opened) return opened;
    opened = new Promise<void>((resolve, reject) => {
      const url = `${opts.origin.replace(/^http/, 'ws')}/ws?token=${encodeURIComponent(opts.token)}`;
      const sock = new WebSocket(url, { headers: { Origin: opts.origin } });
      ws = sock;
      sock.on('open', () => resolve());
      sock.on('error', (err) => reject(err));
      sock.on('message', (data) => {
        let event: unknown;
        try {
          event = JSON.parse(data.toString()) as unknown;
        } catch {
          return;
        }
        for (const l of listeners) l(event);
      });
      sock.on('close', () => {
        ws = null;
        opened = null;
      });
    });
    return opened;
  };
  return {
    name: 'http',
    async invoke(method: ApiMethod, payload: unknown) {
      const res = await fetch(`${opts.origin}/api/${method}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${opts.token}` },
        body: JSON.stringify(payload ?? {}),
      });
      const body = (await res.json().catch(() => null)) as { error?: unknown } | null;
      if (!res.ok) throw errorFromBody(body?.error, `${method}: HTTP ${res.status}`);
      return body;
    },
    subscribe(listener) {
      listeners.add(listener);
      if (!closed) void connect().catch(() => undefined);
      return () => listeners.delete(listener);
    },
    mediaUrl(sha256, variant) {
      return `${opts.origin}/media/${sha256}/${variant}?token=${encodeURIComponent(opts.token)}`;
    },
    plotFrameUrl() {
      return `${opts.origin.replace('127.0.0.1', 'localhost')}/plot-frame.html`;
    },
    close() {
      closed = true;
      ws?.close();
    },
  };
}

/** Waits until the WebSocket of a transport is open (events sent before would be missed). */
export async function waitForEvents(transport: Transport, timeoutMs = 5000): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new ApiError('unavailable', 'no hello on the WebSocket')), timeoutMs);
    const off = transport.subscribe((e) => {
      if ((e as { type?: string }).type === 'hello') {
        clearTimeout(timer);
        off();
        resolve();
      }
    });
  });
}
