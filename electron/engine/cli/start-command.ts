// `npm start`: the desktop workbench where Electron can run, the browser workbench where it
// cannot (no Electron binary, no display). Either way the user gets a workbench; when it falls
// back, standard error says why and standard output's first line is the URL to open.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { ParallaxConfig } from '../../../shared/config.js';
import { packageRoot } from '../paths.js';
import { serveCommand } from './serve-command.js';

export interface StartContext {
  dataDir: string;
  config?: ParallaxConfig;
}

/** The Electron binary, or why there is none. */
export function findElectron(env: NodeJS.ProcessEnv = process.env, platform = process.platform): { path: string } | { reason: string } {
  let binary: unknown;
  try {
    // The electron npm package exports the path of its binary, and throws when the binary
    // was never downloaded (offline installs skip its postinstall).
    binary = createRequire(import.meta.url)('electron');
  } catch (err) {
    return { reason: `no Electron binary (${err instanceof Error ? err.message.split('\n')[0] : String(err)})` };
  }
  if (typeof binary !== 'string' || !fs.existsSync(binary)) return { reason: `no Electron binary at ${String(binary)}` };
  if (platform === 'linux' && !env.DISPLAY && !env.WAYLAND_DISPLAY) return { reason: 'no display (neither DISPLAY nor WAYLAND_DISPLAY is set)' };
  return { path: binary };
}

export async function startCommand(argv: string[], ctx: StartContext): Promise<number> {
  const electron = findElectron();
  const builtMain = path.join(packageRoot(), 'dist', 'electron', 'main', 'main.js');
  if ('path' in electron && fs.existsSync(builtMain)) {
    const i = argv.indexOf('--data-dir');
    const dataDir = i >= 0 && argv[i + 1] ? path.resolve(argv[i + 1]) : ctx.dataDir;
    process.stderr.write(`parallax: starting the desktop workbench (data folder ${dataDir})\n`);
    return new Promise<number>((resolve) => {
      const child = spawn(electron.path, [packageRoot(), '--data-dir', dataDir], { stdio: 'inherit' });
      const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
      const onInt = forward('SIGINT');
      const onTerm = forward('SIGTERM');
      process.on('SIGINT', onInt);
      process.on('SIGTERM', onTerm);
      child.on('error', (err) => {
        process.stderr.write(`parallax: Electron failed to start (${err.message}); use 'parallax serve' for the browser workbench\n`);
        resolve(1);
      });
      child.on('exit', (code, signal) => {
        process.off('SIGINT', onInt);
        process.off('SIGTERM', onTerm);
        resolve(code ?? (signal ? 130 : 1));
      });
    });
  }
  const why = 'reason' in electron ? electron.reason : `the desktop app is not built (${builtMain} is missing: run 'npm run build')`;
  process.stderr.write(`parallax: cannot open the desktop window: ${why}. Serving the workbench in the browser instead.\n`);
  return serveCommand(argv, ctx);
}
