#!/usr/bin/env node
// Entry point of the `parallax` command: runs the compiled CLI from dist/.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// onnxruntime-node (1.30, Linux) crashes with SIGSEGV while creating a session when the
// process's command line is long (seen from ~28 KB, e.g. `baseline add` given hundreds of
// files by a shell glob). Such a command line is handed to a child through a file instead.
const ARGV_LIMIT_BYTES = 16 * 1024;
const ARGS_FILE_FLAG = '--parallax-args-file';

const cli = new URL('../dist/electron/engine/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(cli))) {
  process.stderr.write('parallax: not built yet; run `npm install` (or `npm run build`) in the repository first\n');
  process.exit(1);
}

let args = process.argv.slice(2);
if (args[0] === ARGS_FILE_FLAG && args.length === 2) {
  args = JSON.parse(readFileSync(args[1], 'utf8'));
} else if (Buffer.byteLength(args.join('\0')) > ARGV_LIMIT_BYTES) {
  process.exit(await relayThroughFile(args));
}
const { main } = await import(cli.href);
process.exitCode = await main(args);

/** Runs this command again in a child that reads its arguments from a file; returns its exit code. */
function relayThroughFile(argv) {
  const dir = mkdtempSync(join(tmpdir(), 'parallax-args-'));
  const file = join(dir, 'argv.json');
  writeFileSync(file, JSON.stringify(argv), { mode: 0o600 });
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ARGS_FILE_FLAG, file], {
      stdio: 'inherit',
    });
    // The terminal sends Ctrl-C to the child as well; it decides how to stop (its first Ctrl-C
    // finishes the current batch). SIGTERM from a supervisor is passed on.
    const ignore = () => undefined;
    const forwardTerm = () => child.kill('SIGTERM');
    process.on('SIGINT', ignore);
    process.on('SIGTERM', forwardTerm);
    const finish = (code) => {
      rmSync(dir, { recursive: true, force: true });
      resolve(code);
    };
    child.on('error', (err) => {
      process.stderr.write(`parallax: could not start: ${err.message}\n`);
      finish(1);
    });
    child.on('exit', (code, signal) => finish(code ?? (signal === 'SIGINT' ? 130 : 1)));
  });
}
