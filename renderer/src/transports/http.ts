// The browser transport (`parallax serve`): JSON over fetch, events over a WebSocket that
// reconnects with back-off. The per-launch token arrives in the page URL once, moves to
// sessionStorage, and is removed from the address bar so it is not copied or bookmarked.
import { errorFromBody, type Transport } from '../../../shared/api/client.js';
import { ApiError } from '../../../shared/api/contract.js';
import type { ApiMethod } from '../../../shared/api/methods.js';

const TOKEN_KEY = 'parallax.token';

export function takeToken(): string | null {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get('token');
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    url.searchParams.delete('token');
    window.history.replaceState(null, '', `${url.pathname}${url.search}${url.hash}`);
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export function httpTransport(token: string): Transport {
  const listeners = new Set<(e: unknown) => void>();
  const connListeners = new Set<(c: boolean) => void>();
  let socket: WebSocket | null = null;
  let connected = false;
  let retry = 0;
  const setConnected = (c: boolean) => {
    if (c === connected) return;
    connected = c;
    for (const l of connListeners) l(c);
  };
  const connect = () => {
    const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${window.location.host}/ws?token=${encodeURIComponent(token)}`);
    socket = ws;
    ws.onopen = () => {
      retry = 0;
      setConnected(true);
    };
    ws.onmessage = (m) => {
      let event: unknown;
      try {
        event = JSON.parse(String(m.data)) as unknown;
      } catch {
        return;
      }
      for (const l of listeners) l(event);
    };
    ws.onclose = () => {
      socket = null;
      setConnected(false);
      // Back off up to 10 s: the server may be restarting.
      const delay = Math.min(10_000, 250 * 2 ** retry++);
      window.setTimeout(connect, delay);
    };
  };
  connect();
  return {
    name: 'http',
    async invoke(method: ApiMethod, payload: unknown) {
      let res: Response;
      try {
        res = await fetch(`/api/${method}`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
          body: JSON.stringify(payload ?? {}),
        });
      } catch (err) {
        throw new ApiError('unavailable', `the workbench server does not answer (${err instanceof Error ? err.message : String(err)}): is 'parallax serve' still running?`);
      }
      const body = (await res.json().catch(() => null)) as { error?: unknown } | null;
      if (!res.ok) throw errorFromBody(body?.error, `${method}: HTTP ${res.status}`);
      return body;
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    mediaUrl(sha256, variant) {
      return `/media/${sha256}/${variant}?token=${encodeURIComponent(token)}`;
    },
    plotFrameUrl() {
      // The other loopback name is another site, hence another renderer process.
      const other = window.location.hostname === 'localhost' ? '127.0.0.1' : 'localhost';
      return `${window.location.protocol}//${other}:${window.location.port}/plot-frame.html`;
    },
    onConnection(listener) {
      connListeners.add(listener);
      listener(connected);
      return () => connListeners.delete(listener);
    },
  };
}
