// What the guard costs per image: the same tool call (an image served by a small MCP server)
// made straight to the server and through `parallax mcp guard`, image by image, alternating,
// from a real SDK client over real stdio pipes.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { quantile } from '../../../shared/math/stats.js';

export interface LatencyStats {
  p50: number;
  p95: number;
}

export interface GuardLatency {
  direct_ms: LatencyStats;
  guarded_ms: LatencyStats;
  added_ms: LatencyStats;
}

/** Sibling module paths with this file's own extension: .js from dist, .ts under tsx. */
function sibling(name: string): string {
  const self = fileURLToPath(import.meta.url);
  return path.join(path.dirname(self), `${name}${path.extname(self)}`);
}

function childEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  // A test runner's marker would make a child that imports node:test report to the wrong place.
  delete env.NODE_TEST_CONTEXT;
  return env;
}

async function connect(name: string, command: string, args: string[]): Promise<Client> {
  const transport = new StdioClientTransport({ command, args, env: childEnv(), stderr: 'ignore' });
  const client = new Client({ name: `parallax-bench-${name}`, version: '1.0.0' });
  await client.connect(transport);
  return client;
}

function stats(values: number[]): LatencyStats {
  return { p50: round(quantile(values, 0.5)), p95: round(quantile(values, 0.95)) };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

/**
 * `dataDir` must hold a trained detector set; the guard records its verdicts there (source
 * 'mcp-guard'), so use a scratch folder. Images the folder has already scanned hit the
 * embedding cache and make the guard look cheaper than it is.
 */
export async function measureGuardLatency(opts: { dataDir: string; images: string[] }): Promise<GuardLatency> {
  if (opts.images.length === 0) throw new Error('measureGuardLatency needs at least one image');
  const images = opts.images.map((f) => path.resolve(f));
  const node = process.execPath;
  const serverArgs = [...process.execArgv, sibling('bench-server'), ...images];
  const direct = await connect('direct', node, serverArgs);
  let guarded: Client | undefined;
  try {
    guarded = await connect('guarded', node, [
      ...process.execArgv,
      sibling('entry'),
      'guard',
      '--data-dir',
      path.resolve(opts.dataDir),
      '--no-quarantine',
      '--',
      node,
      ...serverArgs,
    ]);
    // The first scan opens the encoder and loads the detector set; that is start-up, not per-image cost.
    await direct.callTool({ name: 'warmup', arguments: {} });
    await guarded.callTool({ name: 'warmup', arguments: {} });
    const d: number[] = [];
    const g: number[] = [];
    const timed = async (client: Client, index: number): Promise<number> => {
      const t = performance.now();
      const r = await client.callTool({ name: 'image', arguments: { index } });
      const ms = performance.now() - t;
      if (r.isError && client === direct) throw new Error(`${images[index]}: the bench server could not serve it`);
      return ms;
    };
    for (let i = 0; i < images.length; i++) {
      // Alternate which path goes first, so that neither always meets a cold cache or a busy CPU.
      if (i % 2 === 0) {
        d.push(await timed(direct, i));
        g.push(await timed(guarded, i));
      } else {
        g.push(await timed(guarded, i));
        d.push(await timed(direct, i));
      }
    }
    return { direct_ms: stats(d), guarded_ms: stats(g), added_ms: stats(g.map((x, i) => x - d[i])) };
  } finally {
    await direct.close().catch(() => undefined);
    await guarded?.close().catch(() => undefined);
  }
}
