// `parallax serve`: the workbench over HTTP on 127.0.0.1 only. It serves the built renderer,
// the API as JSON POST /api/<method>, media as GET /media/<sha256>/<thumb|full>, and job
// progress and change notices over a WebSocket at /ws.
//
// A random token made at launch guards every API, media and WebSocket request: any web page
// the user visits can reach 127.0.0.1, so the port alone is no protection. The token travels
// to the page in the URL printed at start. The Host header is checked too (DNS rebinding),
// and the WebSocket's Origin must be this server's own.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { ApiError, type ApiErrorCode } from '../../../shared/api/contract.js';
import { pageCsp, plotFrameCsp } from '../../../shared/api/csp.js';
import type { WorkbenchService } from '../workbench/service.js';

export interface ServerOptions {
  service: WorkbenchService;
  /** 0 picks a free port. */
  port?: number;
  /** The built renderer (index.html and its bundles). */
  staticDir: string;
  /** Fixed token (tests); by default 32 random bytes, new at every launch. */
  token?: string;
}

export interface RunningServer {
  url: string;
  origin: string;
  port: number;
  token: string;
  close(): Promise<void>;
}

const HOST = '127.0.0.1';
const MAX_BODY = 4 * 1024 * 1024;

const STATUS: Record<ApiErrorCode, number> = {
  bad_request: 400,
  unauthorized: 401,
  not_found: 404,
  media_not_retained: 404,
  conflict: 409,
  unavailable: 503,
  internal: 500,
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
};

/** The page's Content-Security-Policy; the chart frame is served from the other loopback name: another site, another process. */
export function contentSecurityPolicy(port: number): string {
  return pageCsp({ connect: `'self' ws://${HOST}:${port} ws://localhost:${port}`, frame: `http://${HOST}:${port} http://localhost:${port}` });
}

export function plotFrameSecurityPolicy(port: number): string {
  return plotFrameCsp(`http://${HOST}:${port} http://localhost:${port}`);
}

function securityHeaders(port: number, frame = false): Record<string, string> {
  const h: Record<string, string> = {
    'Content-Security-Policy': frame ? plotFrameSecurityPolicy(port) : contentSecurityPolicy(port),
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Resource-Policy': 'same-origin',
  };
  if (!frame) h['X-Frame-Options'] = 'DENY';
  return h;
}

export function tokensEqual(given: string | null | undefined, token: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const token = opts.token ?? randomBytes(32).toString('base64url');
  const { service } = opts;
  const staticRoot = path.resolve(opts.staticDir);
  let port = opts.port ?? 0;
  const allowedHosts = () => new Set([`${HOST}:${port}`, `localhost:${port}`]);
  const allowedOrigins = () => new Set([`http://${HOST}:${port}`, `http://localhost:${port}`]);

  const sendJson = (res: http.ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { ...securityHeaders(port), 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(text);
  };
  const sendError = (res: http.ServerResponse, err: unknown) => {
    const e = err instanceof ApiError ? err : new ApiError('internal', err instanceof Error ? err.message : String(err));
    sendJson(res, STATUS[e.code] ?? 500, { error: e.toBody() });
  };
  const tokenOf = (req: http.IncomingMessage, url: URL): string | null => {
    const auth = req.headers.authorization;
    if (auth?.startsWith('Bearer ')) return auth.slice(7);
    const header = req.headers['x-parallax-token'];
    if (typeof header === 'string') return header;
    return url.searchParams.get('token');
  };

  const server = http.createServer((req, res) => {
    void (async () => {
      try {
        if (!allowedHosts().has(req.headers.host ?? '')) {
          res.writeHead(421, { 'Content-Type': 'text/plain' });
          res.end('misdirected request: this server answers only to 127.0.0.1 and localhost');
          return;
        }
        const url = new URL(req.url ?? '/', `http://${HOST}:${port}`);
        if (url.pathname.startsWith('/api/')) {
          if (!tokensEqual(tokenOf(req, url), token)) throw new ApiError('unauthorized', 'missing or wrong token: open the URL that `parallax serve` printed');
          if (req.method !== 'POST') throw new ApiError('bad_request', `use POST for ${url.pathname}`);
          const method = decodeURIComponent(url.pathname.slice('/api/'.length));
          const payload = await readJson(req);
          sendJson(res, 200, await service.call(method, payload));
          return;
        }
        if (url.pathname.startsWith('/media/')) {
          if (!tokensEqual(tokenOf(req, url), token)) throw new ApiError('unauthorized', 'missing or wrong token');
          const [, , sha, variant = 'thumb'] = url.pathname.split('/');
          if (variant !== 'thumb' && variant !== 'full') throw new ApiError('bad_request', `media variant must be thumb or full, not '${variant}'`);
          const media = await service.mediaBytes(sha ?? '', variant);
          res.writeHead(200, {
            ...securityHeaders(port),
            'Content-Type': media.mime,
            'Content-Length': String(media.bytes.byteLength),
            // Content-addressed: the bytes for a sha256 never change.
            'Cache-Control': 'private, max-age=86400, immutable',
          });
          res.end(media.bytes);
          return;
        }
        if (req.method !== 'GET' && req.method !== 'HEAD') throw new ApiError('bad_request', `${req.method} is not served here`);
        serveStatic(res, url.pathname);
      } catch (err) {
        sendError(res, err);
      }
    })();
  });

  const serveStatic = (res: http.ServerResponse, pathname: string) => {
    const rel = pathname === '/' ? 'index.html' : decodeURIComponent(pathname).replace(/^\/+/, '');
    const file = path.resolve(staticRoot, rel);
    if (!file.startsWith(staticRoot + path.sep)) throw new ApiError('not_found', `no such file ${pathname}`);
    if (!fs.existsSync(file) || !fs.statSync(file).isFile()) {
      if (rel === 'index.html') {
        res.writeHead(503, { ...securityHeaders(port), 'Content-Type': 'text/plain; charset=utf-8' });
        res.end(`The workbench's renderer is not built (${staticRoot} has no index.html): run 'npm run build'. The API answers at /api/.`);
        return;
      }
      throw new ApiError('not_found', `no such file ${pathname}`);
    }
    const type = TYPES[path.extname(file)] ?? 'application/octet-stream';
    res.writeHead(200, {
      ...securityHeaders(port, rel === 'plot-frame.html'),
      'Content-Type': type,
      'Cache-Control': rel === 'index.html' ? 'no-store' : 'no-cache',
    });
    fs.createReadStream(file).pipe(res);
  };

  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  const sockets = new Set<WebSocket>();
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', `http://${HOST}:${port}`);
    const refuse = (code: number, text: string) => {
      socket.write(`HTTP/1.1 ${code} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      socket.destroy();
    };
    if (url.pathname !== '/ws') return refuse(404, 'Not Found');
    if (!allowedHosts().has(req.headers.host ?? '')) return refuse(421, 'Misdirected Request');
    // Browsers always send Origin on WebSocket handshakes; a foreign page gets its own origin here.
    const origin = req.headers.origin;
    if (origin !== undefined && !allowedOrigins().has(origin)) return refuse(403, 'Forbidden');
    if (!tokensEqual(url.searchParams.get('token'), token)) return refuse(401, 'Unauthorized');
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      ws.on('close', () => sockets.delete(ws));
      ws.on('error', () => sockets.delete(ws));
      ws.send(JSON.stringify({ type: 'hello', at: new Date().toISOString() }));
    });
  });
  const unsubscribe = service.events.on((event) => {
    const text = JSON.stringify(event);
    for (const ws of sockets) if (ws.readyState === ws.OPEN) ws.send(text);
  });
  // A client that stops answering pings is dropped, so a closed laptop lid does not leak sockets.
  const heartbeat = setInterval(() => {
    for (const ws of sockets) {
      const w = ws as WebSocket & { alive?: boolean };
      if (w.alive === false) {
        ws.terminate();
        sockets.delete(ws);
        continue;
      }
      w.alive = false;
      ws.ping();
      ws.once('pong', () => (w.alive = true));
    }
  }, 30_000);
  heartbeat.unref();

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new Error(`port ${port} on ${HOST} is already in use: pass another --port (0 picks a free one)`) : err),
    );
    server.listen(port, HOST, () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  const origin = `http://${HOST}:${port}`;
  return {
    url: `${origin}/?token=${token}`,
    origin,
    port,
    token,
    close: async () => {
      clearInterval(heartbeat);
      unsubscribe();
      for (const ws of sockets) ws.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new ApiError('bad_request', `request body over ${MAX_BODY / 1024 / 1024} MiB`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  const type = req.headers['content-type'] ?? '';
  if (!type.startsWith('application/json')) throw new ApiError('bad_request', `send JSON (Content-Type: application/json), not '${type}'`);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch (err) {
    throw new ApiError('bad_request', `request body is not JSON: ${(err as Error).message}`);
  }
}
