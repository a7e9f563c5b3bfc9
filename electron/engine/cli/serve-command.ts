// `parallax serve [--port N] [--data-dir D] [--no-demo]`: the workbench in a browser. The first
// line on standard output is the URL to open (token included); everything else goes to
// standard error. Runs until SIGINT or SIGTERM.
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { ParallaxConfig } from '../../../shared/config.js';
import { Engine } from '../engine.js';
import { packageRoot } from '../paths.js';
import { startServer, type RunningServer } from '../server/server.js';
import { WorkbenchService } from '../workbench/service.js';

export interface ServeContext {
  dataDir: string;
  config?: ParallaxConfig;
}

export interface ServeHandle {
  url: string;
  server: RunningServer;
  service: WorkbenchService;
  engine: Engine;
  close(): Promise<void>;
}

/** The built renderer beside the compiled engine: <package>/dist/renderer. */
export function rendererDir(): string {
  return process.env.PARALLAX_RENDERER_DIR ?? path.join(packageRoot(), 'dist', 'renderer');
}

/** Starts engine, service and server; the caller owns the lifetime (tests, `npm start`). */
export async function startWorkbench(opts: {
  dataDir: string;
  config?: ParallaxConfig;
  port?: number;
  demo?: boolean;
  token?: string;
}): Promise<ServeHandle> {
  const engine = await Engine.open({ dataDir: opts.dataDir, config: opts.config });
  let service: WorkbenchService | undefined;
  try {
    service = await WorkbenchService.create({ engine, config: opts.config, transport: 'http', demo: opts.demo ?? true });
    const server = await startServer({ service, port: opts.port ?? 0, staticDir: rendererDir(), token: opts.token });
    const svc = service;
    return {
      url: server.url,
      server,
      service: svc,
      engine,
      close: async () => {
        await server.close();
        await svc.close();
        await engine.close();
      },
    };
  } catch (err) {
    await service?.close().catch(() => undefined);
    await engine.close();
    throw err;
  }
}

export async function serveCommand(argv: string[], ctx: ServeContext): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      allowPositionals: false,
      options: {
        port: { type: 'string' },
        'data-dir': { type: 'string' },
        'no-demo': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: false,
    }));
  } catch (err) {
    process.stderr.write(`parallax serve: ${(err as Error).message}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(
      'Usage: parallax serve [--port N] [--data-dir DIR] [--no-demo]\n' +
        'Serves the workbench on 127.0.0.1 and prints its URL (with a per-launch token) as the first line.\n' +
        'An empty data folder is filled with the bundled demo set unless --no-demo is given.\n',
    );
    return 0;
  }
  let port = 0;
  if (values.port === true) {
    process.stderr.write('parallax serve: --port needs a number (0 picks a free port)\n');
    return 2;
  }
  if (typeof values.port === 'string') {
    port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      process.stderr.write(`parallax serve: --port must be an integer in 0..65535, got '${values.port}'\n`);
      return 2;
    }
  }
  const dataDir = typeof values['data-dir'] === 'string' ? path.resolve(values['data-dir']) : ctx.dataDir;
  let handle: ServeHandle;
  try {
    handle = await startWorkbench({ dataDir, config: ctx.config, port, demo: !values['no-demo'] });
  } catch (err) {
    process.stderr.write(`parallax serve: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  process.stdout.write(`${handle.url}\n`);
  process.stderr.write(`parallax serve: workbench on ${handle.server.origin} (data folder ${dataDir}); Ctrl-C to stop\n`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`parallax serve: ${sig}, stopping\n`);
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      handle.close().then(
        () => resolve(0),
        (err: unknown) => {
          process.stderr.write(`parallax serve: error while stopping: ${err instanceof Error ? err.message : String(err)}\n`);
          resolve(1);
        },
      );
    };
    const onInt = () => stop('SIGINT');
    const onTerm = () => stop('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
  });
}
