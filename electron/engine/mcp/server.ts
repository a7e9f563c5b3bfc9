// `parallax mcp serve`: Parallax as an MCP server, so an agent (or an analyst's MCP client)
// can ask for a verdict on a file or on bytes it holds, look a verdict up by sha256, and list
// what was flagged. Verdicts are recorded like every other scan, with the caller's source.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { ParallaxConfig } from '../../../shared/config.js';
import type { Decision } from '../../../shared/types.js';
import { DEFAULT_BASELINE, Engine, type ItemError, type ScanItem } from '../engine.js';
import type { VerdictRow } from '../store/store.js';
import { ENGINE_VERSION } from '../version.js';
import { decodeBase64Strict, topSignals } from './inspect.js';

export const SERVE_SOURCE = 'mcp';

const signalSchema = z.object({ raw: z.number(), risk: z.number(), p: z.number(), weight: z.number(), share: z.number() });
const neighbourSchema = z.object({
  itemId: z.number(),
  sha256: z.string(),
  path: z.string().nullable(),
  distance: z.number(),
});

const verdictShape = {
  sha256: z.string(),
  decision: z.enum(['allow', 'review', 'block']),
  risk: z.number(),
  p: z.number(),
  modality: z.string(),
  path: z.string().nullable(),
  source: z.string(),
  signals: z.record(z.string(), signalSchema),
  neighbours: z.array(neighbourSchema),
  verdict_id: z.number(),
};
const verdictSchema = z.object(verdictShape);

const scanOutput = { ...verdictShape, duration_ms: z.number() };
const getVerdictOutput = {
  ...verdictShape,
  created_at: z.string(),
  encoder_id: z.string(),
  detector_set_id: z.number(),
  labels: z.array(z.object({ label: z.string(), reason: z.string().nullable(), analyst: z.string(), created_at: z.string() })),
};
const flaggedOutput = {
  count: z.number(),
  verdicts: z.array(verdictSchema.extend({ created_at: z.string() })),
};

const SOURCE_RE = /^[A-Za-z0-9._:/-]{1,64}$/;

/** A tool error the model can read: the item and the reason. */
function toolError(text: string): CallToolResult {
  return { content: [{ type: 'text', text }], isError: true };
}

function summaryLine(v: { decision: Decision; risk: number; sha256: string; path: string | null }, top: string): string {
  return `${v.decision} — risk ${v.risk.toFixed(2)}; top signals: ${top}; sha256 ${v.sha256}${v.path ? ` (${v.path})` : ''}`;
}

function isItemError(r: ScanItem | ItemError): r is ItemError {
  return !('decision' in r);
}

function rowToVerdict(row: VerdictRow & { modality?: string }) {
  return {
    sha256: row.sha256,
    decision: row.decision,
    risk: row.risk,
    p: row.p_value,
    modality: row.modality ?? 'image',
    path: row.path,
    source: row.source,
    signals: JSON.parse(row.signals) as Record<string, z.infer<typeof signalSchema>>,
    neighbours: JSON.parse(row.neighbours) as z.infer<typeof neighbourSchema>[],
    verdict_id: row.id,
    created_at: row.created_at,
  };
}

function topOf(signals: Record<string, { share: number }>): string {
  return topSignals({ signals } as unknown as ScanItem);
}

export interface ScanServerOptions {
  baseline?: string;
  /** Recorded with every verdict unless the caller names another source. */
  defaultSource?: string;
}

/** The MCP server over an open engine (the caller owns the engine and closes it). */
export function createScanServer(engine: Engine, opts: ScanServerOptions = {}): McpServer {
  const baseline = opts.baseline ?? DEFAULT_BASELINE;
  const defaultSource = opts.defaultSource ?? SERVE_SOURCE;
  const server = new McpServer(
    { name: 'parallax', version: ENGINE_VERSION },
    {
      instructions:
        'Parallax scores images against a baseline of legitimate media (embedding anomaly detection, SAFE-M-51). ' +
        'Call scan_media before trusting an image from an untrusted source; review and block verdicts go to the analysts’ triage queue.',
    },
  );

  server.registerTool(
    'scan_media',
    {
      title: 'Scan media',
      description:
        'Scan one image for embedding anomalies. Give either `path` (a file on this machine) or `data` (base64) with `mime_type`. ' +
        'Returns allow / review / block, a risk in [0, 1], the per-signal breakdown, the sha256 and the nearest baseline items. ' +
        'A `path` to an audio or video file is scanned when the baseline has an audio set (audio) or an image set (video frames); `data` takes images only.',
      inputSchema: {
        path: z.string().min(1).optional().describe('File to scan (absolute, or relative to the server’s working folder)'),
        data: z.string().min(1).optional().describe('Base64 of the media bytes'),
        mime_type: z.string().min(1).optional().describe('MIME type of `data`, e.g. image/png'),
        source: z.string().optional().describe(`Channel recorded with the verdict (default '${defaultSource}')`),
      },
      outputSchema: scanOutput,
      annotations: { readOnlyHint: false, openWorldHint: false },
    },
    async (args) => {
      const source = args.source ?? defaultSource;
      if (!SOURCE_RE.test(source)) {
        return toolError(`invalid source '${source}': use 1-64 letters, digits or . _ : / -`);
      }
      if (args.path !== undefined && args.data !== undefined) {
        return toolError('give either `path` or `data`, not both');
      }
      let result: ScanItem | ItemError;
      if (args.path !== undefined) {
        const file = path.resolve(args.path);
        let stat: fs.Stats;
        try {
          stat = fs.statSync(file);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          return toolError(`${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message}`);
        }
        if (!stat.isFile()) return toolError(`${file}: not a regular file (scan_media takes one file)`);
        const report = await engine.scan([file], { baseline, source });
        const item = report.items[0] ?? report.errors[0];
        if (!item) return toolError(`${file}: nothing was scanned`);
        result = item;
      } else if (args.data !== undefined) {
        if (!args.mime_type) return toolError('`data` needs `mime_type` (for example image/png)');
        const mime = args.mime_type.toLowerCase();
        const kind = mime.split('/')[0];
        if (kind === 'audio' || kind === 'video') {
          return toolError(`${kind} scanning is not available: this Parallax scans images only (got ${args.mime_type})`);
        }
        if (kind !== 'image') return toolError(`mime_type '${args.mime_type}' is not an image type`);
        const bytes = decodeBase64Strict(args.data);
        if (!bytes || bytes.length === 0) return toolError('`data` is not valid base64');
        result = await engine.scanBytes(bytes, { baseline, source });
      } else {
        return toolError('give `path` (a file) or `data` (base64) with `mime_type`');
      }
      if (isItemError(result)) return toolError(`${result.path}: ${result.reason} [${result.code}]`);
      const structured = {
        sha256: result.sha256,
        decision: result.decision,
        risk: result.risk,
        p: result.p,
        modality: result.modality,
        path: result.path,
        source,
        signals: result.signals,
        neighbours: result.neighbours,
        verdict_id: result.verdict_id,
        duration_ms: result.duration_ms,
      };
      return {
        content: [{ type: 'text', text: summaryLine(result, topSignals(result)) }],
        structuredContent: structured,
      };
    },
  );

  server.registerTool(
    'get_verdict',
    {
      title: 'Get verdict',
      description: 'The latest recorded verdict for an item, by the sha256 of its bytes, with any analyst labels.',
      inputSchema: { sha256: z.string().describe('64 hex digits') },
      outputSchema: getVerdictOutput,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async ({ sha256 }) => {
      const sha = sha256.trim().toLowerCase();
      if (!/^[0-9a-f]{64}$/.test(sha)) return toolError(`'${sha256}' is not a sha256 (64 hex digits)`);
      const row = engine.store.latestVerdict(sha) as (VerdictRow & { modality?: string }) | undefined;
      if (!row) return toolError(`unknown sha256 ${sha}: no verdict is recorded for it`);
      const item = engine.store.itemBySha(sha);
      const labels = item
        ? (engine.store.db
            .prepare('SELECT label, reason, analyst, created_at FROM labels WHERE item_id = ? ORDER BY id')
            .all(item.id) as { label: string; reason: string | null; analyst: string; created_at: string }[])
        : [];
      const v = {
        ...rowToVerdict({ ...row, modality: item?.modality }),
        encoder_id: row.encoder_id,
        detector_set_id: row.detector_set_id,
        labels,
      };
      const labelText = labels.length > 0 ? `; labelled ${labels[labels.length - 1].label}` : '';
      return {
        content: [{ type: 'text', text: `${summaryLine(v, topOf(v.signals))}; recorded ${v.created_at} via ${v.source}${labelText}` }],
        structuredContent: v,
      };
    },
  );

  server.registerTool(
    'list_flagged',
    {
      title: 'List flagged',
      description: 'Recent review and block verdicts, newest first.',
      inputSchema: {
        decision: z.enum(['review', 'block']).optional().describe('Only this decision (default both)'),
        limit: z.number().int().min(1).max(1000).optional().describe('At most this many (default 50)'),
        since: z.string().optional().describe('Only verdicts recorded at or after this time (ISO 8601)'),
      },
      outputSchema: flaggedOutput,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async ({ decision, limit, since }) => {
      let sinceIso = '';
      if (since !== undefined) {
        const t = Date.parse(since);
        if (Number.isNaN(t)) return toolError(`since '${since}' is not a date (use ISO 8601, e.g. 2025-01-31T12:00:00Z)`);
        sinceIso = new Date(t).toISOString();
      }
      const decisions = decision ? [decision] : ['review', 'block'];
      const rows = engine.store.db
        .prepare(
          `SELECT v.*, i.sha256, i.modality FROM verdicts v JOIN items i ON i.id = v.item_id
            WHERE v.decision IN (${decisions.map(() => '?').join(',')}) AND v.created_at >= ?
            ORDER BY v.id DESC LIMIT ?`,
        )
        .all(...decisions, sinceIso, limit ?? 50) as (VerdictRow & { modality: string })[];
      const verdicts = rows.map(rowToVerdict);
      const lines = verdicts.map((v) => `${v.created_at}  ${summaryLine(v, topOf(v.signals))}`);
      return {
        content: [{ type: 'text', text: verdicts.length > 0 ? lines.join('\n') : 'no flagged verdicts' }],
        structuredContent: { count: verdicts.length, verdicts },
      };
    },
  );

  return server;
}

export interface ServeOptions {
  dataDir: string;
  config?: ParallaxConfig;
  baseline?: string;
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
}

/** Serves over stdio until the client closes the connection. */
export async function runServe(opts: ServeOptions): Promise<number> {
  const stdin = opts.stdin ?? process.stdin;
  const stdout = opts.stdout ?? process.stdout;
  const stderr = opts.stderr ?? process.stderr;
  const engine = await Engine.open({ dataDir: opts.dataDir, config: opts.config });
  const server = createScanServer(engine, { baseline: opts.baseline });
  const transport = new StdioServerTransport(stdin, stdout);
  transport.onerror = (err) => stderr.write(`parallax mcp serve: ${err.message}\n`);
  try {
    const closed = new Promise<void>((resolve) => {
      const done = () => resolve();
      stdin.once('end', done);
      stdin.once('close', done);
      transport.onclose = done;
    });
    await server.connect(transport);
    // Open the encoder now, so that the first scan does not pay for it.
    engine.encoder().catch((err: Error) => stderr.write(`parallax mcp serve: the encoder could not load: ${err.message}\n`));
    await closed;
    return 0;
  } finally {
    await server.close().catch(() => undefined);
    if (stdin === process.stdin) process.stdin.destroy();
    await engine.close();
  }
}

export interface HttpServeOptions extends ServeOptions {
  /** Interface to listen on (default 127.0.0.1: the server has no authentication). */
  host?: string;
  /** 0 picks a free port; the address is printed on standard error. */
  port?: number;
  /** Resolves the run when aborted (the CLI wires SIGINT/SIGTERM to it). */
  signal?: AbortSignal;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

/**
 * Serves over Streamable HTTP at http://host:port/mcp, statelessly: every POST gets a fresh
 * McpServer over the one shared engine, so no session state lives in the server.
 */
export async function runServeHttp(opts: HttpServeOptions): Promise<number> {
  const stderr = opts.stderr ?? process.stderr;
  const host = opts.host ?? '127.0.0.1';
  const engine = await Engine.open({ dataDir: opts.dataDir, config: opts.config });
  let port = opts.port ?? 0;
  const httpServer = http.createServer((req, res) => {
    void handle(req, res).catch((err: unknown) => {
      stderr.write(`parallax mcp serve: ${req.method ?? '?'} ${req.url ?? '?'} failed: ${err instanceof Error ? err.message : String(err)}\n`);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32603, message: 'internal error' } }));
    });
  });
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== '/mcp') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the MCP endpoint is /mcp\n');
      return;
    }
    const server = createScanServer(engine, { baseline: opts.baseline });
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: true,
      // Room for the largest image the engine accepts, base64-encoded inside JSON.
      maxRequestBodySize: Math.ceil((engine.limits.maxFileBytes * 4) / 3) + 1024 * 1024,
      // A web page must not reach a loopback server through a rebound DNS name.
      enableDnsRebindingProtection: LOOPBACK.has(host),
      allowedHosts: [...LOOPBACK].flatMap((h) => [`${h.includes(':') ? `[${h}]` : h}:${port}`]),
    });
    res.on('close', () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res);
  };
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(port, host, () => resolve());
  });
  const address = httpServer.address();
  if (address && typeof address === 'object') port = address.port;
  const shown = host.includes(':') ? `[${host}]` : host;
  stderr.write(`parallax mcp serve: listening on http://${shown}:${port}/mcp${LOOPBACK.has(host) ? '' : ' (no authentication: keep it on a trusted network)'}\n`);
  engine.encoder().catch((err: Error) => stderr.write(`parallax mcp serve: the encoder could not load: ${err.message}\n`));
  try {
    await new Promise<void>((resolve) => {
      if (opts.signal?.aborted) resolve();
      opts.signal?.addEventListener('abort', () => resolve(), { once: true });
    });
    return 0;
  } finally {
    httpServer.closeAllConnections();
    await new Promise<void>((resolve) => httpServer.close(() => resolve()));
    await engine.close();
  }
}
