// `parallax mcp serve` and `parallax mcp guard ... -- <command> [args...]`. Both speak MCP on
// standard output, so nothing else may be written there: every diagnostic goes to standard error.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, parseConfig, type ParallaxConfig } from '../../../shared/config.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../mcp/framing.js';
import { DEFAULT_SCAN_TIMEOUT_MS, runGuard } from '../mcp/guard.js';
import { runServe, runServeHttp } from '../mcp/server.js';

export const MCP_USAGE = `parallax mcp — Parallax on the Model Context Protocol path

Usage:
  parallax mcp serve [--http [--host H] [--port N]] [--baseline NAME]
      an MCP server with the tools scan_media, get_verdict and list_flagged; stdio by
      default, Streamable HTTP at http://H:N/mcp with --http (default 127.0.0.1, port 0 = any free)

  parallax mcp guard [options] -- <command> [args...]
      a stdio proxy to put in front of another MCP server: it starts <command>, relays
      every message, and scans every image in tool results, resource reads and prompts

Guard options:
  --review hold|pass     review verdicts: withhold the block (hold, default) or pass it; both queue it for triage
  --fail closed|open     when a scan fails or times out: withhold the block (closed, default) or pass it unscanned
  --timeout-ms N         per-block scan deadline (default ${DEFAULT_SCAN_TIMEOUT_MS})
  --max-message-mb N     largest JSON-RPC message relayed, either way (default ${DEFAULT_MAX_MESSAGE_BYTES / 1024 / 1024})
  --baseline NAME        baseline whose detector set judges (default 'default')
  --no-quarantine        do not keep copies of flagged media in <data-dir>/mcp-quarantine

Common options:
  --data-dir DIR         data folder (default: $PARALLAX_HOME, else the per-user app data folder)
  --config FILE          configuration file (default: <data-dir>/config.yaml)

The guard exits with the server's exit code; 2 is a usage error, 1 a failure to start.`;

const EXIT_USAGE = 2;
const EXIT_FATAL = 1;

class McpUsageError extends Error {}

export async function mcpCommand(argv: string[], ctx: { dataDir: string; config?: ParallaxConfig }): Promise<number> {
  const dash = argv.indexOf('--');
  const own = dash === -1 ? argv : argv.slice(0, dash);
  const childCommand = dash === -1 ? [] : argv.slice(dash + 1);
  try {
    const { values, positionals } = parseArgs({
      args: own,
      allowPositionals: true,
      options: {
        'data-dir': { type: 'string' },
        config: { type: 'string' },
        baseline: { type: 'string' },
        review: { type: 'string' },
        fail: { type: 'string' },
        'timeout-ms': { type: 'string' },
        'max-message-mb': { type: 'string' },
        'no-quarantine': { type: 'boolean', default: false },
        http: { type: 'boolean', default: false },
        host: { type: 'string' },
        port: { type: 'string' },
        quiet: { type: 'boolean', short: 'q', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
    const [sub, ...extra] = positionals;
    // main() may pass its own leading "mcp"; tolerate it.
    if (sub === 'mcp') return mcpCommand(argv.slice(argv.indexOf('mcp') + 1), ctx);
    if (values.help) {
      process.stdout.write(`${MCP_USAGE}\n`);
      return 0;
    }
    const dataDir = values['data-dir'] ? path.resolve(values['data-dir']) : ctx.dataDir;
    const config = values.config ? readConfig(values.config) : ctx.config;
    switch (sub) {
      case 'serve': {
        if (extra.length > 0 || childCommand.length > 0) throw new McpUsageError(`'mcp serve' takes no arguments (got '${[...extra, ...childCommand].join(' ')}')`);
        if (!values.http) {
          if (values.host || values.port) throw new McpUsageError('--host and --port need --http');
          return await runServe({ dataDir, config, baseline: values.baseline });
        }
        const port = values.port === undefined ? 0 : Number(values.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535) throw new McpUsageError(`--port must be 0-65535, got '${values.port}'`);
        const controller = new AbortController();
        const stop = () => controller.abort();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        try {
          return await runServeHttp({ dataDir, config, baseline: values.baseline, host: values.host, port, signal: controller.signal });
        } finally {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
        }
      }
      case 'guard': {
        if (extra.length > 0) {
          throw new McpUsageError(`put the server command after '--': parallax mcp guard [options] -- ${extra.join(' ')}`);
        }
        const [command, ...args] = childCommand;
        if (!command) throw new McpUsageError("'mcp guard' needs the server command after '--' (e.g. -- node server.js)");
        return await runGuard({
          dataDir,
          config,
          command,
          args,
          baseline: values.baseline,
          review: oneOf(values.review, ['hold', 'pass'] as const, '--review', 'hold'),
          fail: oneOf(values.fail, ['closed', 'open'] as const, '--fail', 'closed'),
          timeoutMs: values['timeout-ms'] ? positiveNumber(values['timeout-ms'], '--timeout-ms') : undefined,
          maxMessageBytes: values['max-message-mb']
            ? Math.round(positiveNumber(values['max-message-mb'], '--max-message-mb') * 1024 * 1024)
            : undefined,
          quarantine: !values['no-quarantine'],
        });
      }
      case undefined:
        throw new McpUsageError("'parallax mcp' needs a subcommand: serve | guard");
      default:
        throw new McpUsageError(`unknown 'mcp' subcommand '${sub}' (serve | guard)`);
    }
  } catch (err) {
    if (err instanceof McpUsageError || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`parallax mcp: ${(err as Error).message}\n\n${MCP_USAGE}\n`);
      return EXIT_USAGE;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`parallax mcp: ${err.message}\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`parallax mcp: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT_FATAL;
  }
}

function oneOf<T extends string>(value: string | undefined, allowed: readonly T[], flag: string, fallback: T): T {
  if (value === undefined) return fallback;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new McpUsageError(`${flag} must be ${allowed.join(' or ')}, got '${value}'`);
}

function positiveNumber(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new McpUsageError(`${flag} must be a positive number, got '${text}'`);
  return n;
}

function readConfig(file: string): ParallaxConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`, file);
  }
  return parseConfig(text, file);
}
