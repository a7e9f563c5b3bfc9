// `parallax` command line. Standard output carries results (human text, or one JSON
// document with --json); progress and diagnostics go to standard error.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, defaultConfig, defaultConfigYaml, parseConfig, type ParallaxConfig } from '../../../shared/config.js';
import { CancelledError } from '../concurrency.js';
import { Engine, type ItemError, type ScanReport, type StatusReport } from '../engine.js';
import { walkMedia } from '../ingest/walk.js';
import { measureGuardLatency } from '../mcp/bench.js';
import { demoDir } from '../paths.js';
import { runBench } from './bench.js';
import { defaultDataDir } from './data-dir.js';
import { runDemo, smallBaselineNote } from './demo.js';
import { ProgressBar } from './progress.js';

/** Exit codes, documented in the README. Flagged items outrank item errors. */
export const EXIT = {
  ok: 0,
  fatal: 1,
  usage: 2,
  itemErrors: 3,
  review: 10,
  block: 20,
} as const;

const USAGE = `parallax — embedding anomaly detection for images and audio (SAFE-M-51)

Usage:
  parallax baseline add <path...> [--baseline NAME]   add files or folders (recursive; images and audio) to a baseline
  parallax baseline list                              baselines and their sizes
  parallax train [--baseline NAME]                    fit and calibrate the detectors on a baseline
  parallax scan <path...> [--json] [--baseline NAME]  verdicts (allow / review / block) with reasons
                [--text CAPTION]                      the text that comes with the images (CLIP agreement)
  parallax label <sha256> benign|malicious [--reason TEXT] [--analyst NAME]
  parallax status [--json]                            data folder, encoder, device, detector sets
  parallax config [--check FILE]                      print the effective configuration, or check a file
  parallax bench [--images DIR] [--limit N] [--json]  encoder and whole-scan throughput, latency, memory
  parallax demo                                       load the bundled demo set, train, and scan demo suspects
  parallax serve [--port N] [--no-demo]               the workbench in a browser (URL with token on the first line)
  parallax start                                      the desktop workbench, or 'serve' where Electron cannot start
  parallax eval --clean DIR --attacked DIR [...] [--json]
                                                      detection rates per signal, fused and reference, per attack family
  parallax mcp serve                                  MCP server (stdio): scan_media, get_verdict, list_flagged
  parallax redteam <images...> --attack NAME --eps E --out DIR [--target FILE]
                                                      attacked images + manifest against the active encoder
  parallax redteam <audio...> --attack audio-noise|audio-ultrasonic|audio-spsa --out DIR [--eps E]
                                                      perturbed audio (WAV) + manifest, for 'parallax eval'
  parallax mcp guard [options] -- <server command>    MCP proxy that scans images and audio on their way to the model

Global options:
  --data-dir DIR   data folder (default: $PARALLAX_HOME, else the per-user app data folder)
  --config FILE    configuration file (default: <data-dir>/config.yaml)
  -q, --quiet      no progress bar
  -h, --help       this text

Exit codes: 0 all allowed / success; 1 fatal error; 2 usage or configuration error;
3 some inputs could not be processed (none flagged); 10 something sent to review (none
blocked); 20 something blocked.`;

class UsageError extends Error {}

/**
 * Commands that parse their own flags (they pass arguments through to a child process, or
 * have many options of their own). They get the arguments after the command name, with the
 * global --data-dir and --config already resolved.
 */
type DelegatedCommand = (argv: string[], ctx: { dataDir: string; config?: ParallaxConfig }) => Promise<number>;
const DELEGATED: Record<string, () => Promise<DelegatedCommand>> = {
  mcp: async () => (await import('./mcp-command.js')).mcpCommand,
  redteam: async () => {
    const { redteamCommand } = await import('./redteam-command.js');
    return (argv, ctx) => redteamCommand(argv, { dataDir: ctx.dataDir, config: ctx.config ?? dataDirConfig(ctx.dataDir) });
  },
  eval: async () => {
    const { evalCommand } = await import('./eval-command.js');
    return (argv, ctx) => evalCommand(argv, { dataDir: ctx.dataDir, config: ctx.config ?? dataDirConfig(ctx.dataDir) });
  },
  serve: async () => (await import('./serve-command.js')).serveCommand,
  start: async () => (await import('./start-command.js')).startCommand,
};

/** The data folder's config.yaml, or the defaults where there is none yet. */
function dataDirConfig(dataDir: string): ParallaxConfig {
  const file = path.join(dataDir, 'config.yaml');
  return fs.existsSync(file) ? parseConfig(readText(file), file) : defaultConfig();
}

export async function main(argv: string[]): Promise<number> {
  const delegated = DELEGATED[argv[0] ?? ''];
  if (delegated) return runDelegated(await delegated(), argv.slice(1));
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        'data-dir': { type: 'string' },
        config: { type: 'string' },
        baseline: { type: 'string' },
        json: { type: 'boolean', default: false },
        quiet: { type: 'boolean', short: 'q', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        images: { type: 'string' },
        limit: { type: 'string' },
        check: { type: 'string' },
        reason: { type: 'string' },
        analyst: { type: 'string' },
        text: { type: 'string' },
      },
    });
  } catch (err) {
    process.stderr.write(`parallax: ${(err as Error).message}\n\n${USAGE}\n`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    process.stdout.write(`${USAGE}\n`);
    return values.help ? EXIT.ok : EXIT.usage;
  }

  const dataDir = values['data-dir'] ? path.resolve(values['data-dir']) : defaultDataDir();
  const progress = new ProgressBar(process.stderr, !values.quiet);
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write('\nparallax: stopping after the current batch (Ctrl-C again to quit now)\n');
    controller.abort();
  };
  process.on('SIGINT', onSigint);

  let engine: Engine | undefined;
  const openEngine = async (): Promise<Engine> => {
    let config: ParallaxConfig | undefined;
    if (values.config) config = parseConfig(readText(values.config), values.config);
    engine = await Engine.open({ dataDir, config });
    return engine;
  };

  try {
    switch (command) {
      case 'baseline': {
        const [sub, ...paths] = rest;
        if (sub === 'list') {
          const e = await openEngine();
          const list = e.store.listBaselines();
          if (values.json) printJson(list);
          else for (const b of list) process.stdout.write(`${b.name}\t${b.n_items} items\tupdated ${b.updated_at}\n`);
          return EXIT.ok;
        }
        if (sub !== 'add') throw new UsageError(`unknown 'baseline' subcommand '${sub ?? ''}' (add | list)`);
        if (paths.length === 0) throw new UsageError('baseline add needs at least one file or folder');
        const e = await openEngine();
        const report = await e.addToBaseline(paths, {
          baseline: values.baseline,
          signal: controller.signal,
          onProgress: (p) => progress.update('baseline add', p.done, p.total),
        });
        progress.done();
        if (values.json) printJson(report);
        else {
          process.stdout.write(
            `baseline '${report.baseline}': ${report.added} added, ${report.already_present} already present, ${report.total} items in total\n`,
          );
          printErrors(report.errors);
        }
        return report.errors.length > 0 ? EXIT.itemErrors : EXIT.ok;
      }
      case 'train': {
        const e = await openEngine();
        const report = await e.train({
          baseline: values.baseline,
          signal: controller.signal,
          onProgress: (p) => progress.update('train', p.done, p.total),
        });
        progress.done();
        if (values.json) printJson(report);
        else {
          for (const { modality, detector_set: d, seconds } of report.sets ?? [{ modality: 'image', detector_set: report.detector_set, seconds: report.seconds }]) {
            process.stdout.write(
              `trained ${modality === 'image' ? '' : `${modality} `}detector set v${d.version} on ${d.n_items} items of baseline '${report.baseline}' in ${seconds.toFixed(1)} s (encoder ${d.encoder_id})\n`,
            );
            const note = smallBaselineNote(d.n_items);
            if (note) process.stderr.write(`parallax: ${note}\n`);
          }
        }
        return EXIT.ok;
      }
      case 'scan': {
        if (rest.length === 0) throw new UsageError('scan needs at least one file or folder');
        const e = await openEngine();
        const report = await e.scan(rest, {
          baseline: values.baseline,
          text: values.text,
          signal: controller.signal,
          onProgress: (p) => progress.update('scan', p.done, p.total),
        });
        progress.done();
        if (values.json) printJson(report);
        else printScan(report);
        if (report.summary.block > 0) return EXIT.block;
        if (report.summary.review > 0) return EXIT.review;
        return report.errors.length > 0 ? EXIT.itemErrors : EXIT.ok;
      }
      case 'label': {
        const [sha, label] = rest;
        if (!sha || (label !== 'benign' && label !== 'malicious')) {
          throw new UsageError('usage: parallax label <sha256> benign|malicious [--reason TEXT]');
        }
        const e = await openEngine();
        const item = e.store.itemBySha(sha.toLowerCase());
        if (!item) throw new UsageError(`no item with sha256 ${sha}`);
        e.store.addLabel(item.id, label, values.analyst ?? process.env.USER ?? 'analyst', values.reason ?? null);
        process.stdout.write(`labelled ${sha} ${label}\n`);
        return EXIT.ok;
      }
      case 'status': {
        const e = await openEngine();
        const status = await e.status({ baseline: values.baseline });
        if (values.json) printJson(status);
        else printStatus(status);
        return EXIT.ok;
      }
      case 'config': {
        if (values.check) {
          parseConfig(readText(values.check), values.check);
          process.stdout.write(`${values.check}: valid\n`);
          return EXIT.ok;
        }
        const e = await openEngine();
        printJson(e.config);
        return EXIT.ok;
      }
      case 'bench': {
        const log = (line: string) => {
          if (!values.quiet) process.stderr.write(`${line}\n`);
        };
        const config = values.config ? parseConfig(readText(values.config), values.config) : undefined;
        const bench = await runBench({
          images: values.images,
          limit: values.limit ? parsePositiveInt(values.limit, '--limit') : undefined,
          config,
          log,
        });
        const result = { ...bench, mcp_guard: await benchGuard(values.images, log) };
        if (values.json) printJson(result);
        else process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return EXIT.ok;
      }
      case 'demo': {
        const e = await openEngine();
        return await runDemo(e, { json: values.json, progress });
      }
      default:
        throw new UsageError(`unknown command '${command}'`);
    }
  } catch (err) {
    progress.done();
    if (err instanceof UsageError) {
      process.stderr.write(`parallax: ${err.message}\n\nRun 'parallax --help' for usage.\n`);
      return EXIT.usage;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`parallax: ${err.message}\n`);
      return EXIT.usage;
    }
    if (err instanceof CancelledError) {
      process.stderr.write(`parallax: ${err.message}\n`);
      return 130;
    }
    process.stderr.write(`parallax: ${err instanceof Error ? err.message : String(err)}\n`);
    if (process.env.PARALLAX_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return EXIT.fatal;
  } finally {
    process.off('SIGINT', onSigint);
    await engine?.close();
  }
}

async function runDelegated(command: DelegatedCommand, argv: string[]): Promise<number> {
  // Global flags are taken out before the command's own parser sees its arguments; anything
  // after a bare `--` belongs to the command (for example the server the MCP guard starts).
  const rest: string[] = [];
  let dataDir: string | undefined;
  let configFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    const [flag, inline] = arg.split(/=(.*)/s, 2) as [string, string | undefined];
    if (flag === '--data-dir' || flag === '--config') {
      const value = inline ?? argv[++i];
      if (value === undefined) {
        process.stderr.write(`parallax: ${flag} needs a value\n`);
        return EXIT.usage;
      }
      if (flag === '--data-dir') dataDir = value;
      else configFile = value;
      continue;
    }
    rest.push(arg);
  }
  try {
    const config = configFile ? parseConfig(readText(configFile), configFile) : undefined;
    return await command(rest, { dataDir: dataDir ? path.resolve(dataDir) : defaultDataDir(), config });
  } catch (err) {
    process.stderr.write(`parallax: ${err instanceof Error ? err.message : String(err)}\n`);
    return err instanceof ConfigError ? EXIT.usage : EXIT.fatal;
  }
}

/**
 * What the MCP guard adds per image: the same tool call straight to a small MCP server and
 * through `parallax mcp guard`, on images the guard's baseline has not seen.
 */
async function benchGuard(images: string | undefined, log: (line: string) => void) {
  const files: string[] = [];
  for await (const f of walkMedia([path.resolve(images ?? path.join(demoDir(), 'baseline'))])) if (!f.error) files.push(f.path);
  const baseline = files.slice(0, 150);
  const probes = files.slice(0, 20);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parallax-bench-guard-'));
  try {
    log(`bench: MCP guard latency on ${probes.length} images (baseline of ${baseline.length})`);
    const engine = await Engine.open({ dataDir });
    try {
      await engine.addToBaseline(baseline);
      await engine.train();
    } finally {
      await engine.close();
    }
    // The guard reads this folder's config.yaml: with the embedding cache off, every probe is
    // decoded and encoded for real even though it is also a baseline item.
    fs.writeFileSync(
      path.join(dataDir, 'config.yaml'),
      defaultConfigYaml().replace('cache_embeddings: true', 'cache_embeddings: false'),
    );
    return { images: probes.length, ...(await measureGuardLatency({ dataDir, images: probes })) };
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`, file);
  }
}

function parsePositiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${flag} must be a positive integer, got '${text}'`);
  return n;
}

function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

function printErrors(errors: ItemError[]): void {
  for (const e of errors) process.stdout.write(`error  ${e.path}: ${e.reason}\n`);
}

function printScan(report: ScanReport): void {
  for (const item of report.items) {
    const top = Object.entries(item.signals)
      .sort((a, b) => b[1].share - a[1].share)
      .slice(0, 2)
      .filter(([, s]) => s.share > 0)
      .map(([name, s]) => `${name} ${(s.share * 100).toFixed(0)}%`)
      .join(', ');
    process.stdout.write(
      `${item.decision.padEnd(6)} risk ${item.risk.toFixed(2)}  ${item.path ?? item.sha256}${top ? `  (${top})` : ''}\n`,
    );
    // Rule-based checks (weight 0, so never among the shares above) when they fired, and the
    // frames that drove a video's verdict.
    for (const name of ['ultrasonic', 'ocr_instructions', 'clip_agreement']) {
      const c = item.signals[name];
      if (c && (c.risk >= 0.4 || name === 'clip_agreement')) process.stdout.write(`       ${name} ${c.raw.toFixed(2)}${c.detail ? `: ${c.detail}` : ''}\n`);
    }
    for (const f of item.frames ?? []) process.stdout.write(`       frame ${f.index} (source frame ${f.source_frame}, ${f.time_s.toFixed(2)} s): ${f.why}\n`);
  }
  printErrors(report.errors);
  const s = report.summary;
  process.stdout.write(
    `${report.items.length} scanned: ${s.allow} allow, ${s.review} review, ${s.block} block; ${s.errors} errors (encoder ${report.engine.encoder_id} on ${report.engine.provider})\n`,
  );
}

function printStatus(s: StatusReport): void {
  const lines = [
    `Parallax ${s.version}`,
    `data folder   ${s.data_dir}`,
    `database      ${s.database} (schema v${s.schema_version})`,
    `config        ${s.config}`,
    s.encoder.error
      ? `encoder       unavailable: ${s.encoder.error}`
      : `encoder       ${s.encoder.id} (${s.encoder.dim}-d) on ${s.encoder.provider}${s.encoder.provider_note ? ` — ${s.encoder.provider_note}` : ''}`,
    `verdicts      ${s.verdicts.allow} allow, ${s.verdicts.review} review, ${s.verdicts.block} block`,
    `audit log     ${s.audit_chain_ok ? 'hash chain intact' : 'HASH CHAIN BROKEN'}`,
  ];
  if (s.baselines.length === 0) lines.push(`baselines     none yet: run 'parallax baseline add <folder>'`);
  for (const b of s.baselines) {
    const d = b.detector_set;
    const det = d
      ? `detector set v${d.version} on ${d.n_items} items, ${d.age_days} days old${d.stale ? ' (STALE: retrain)' : ''}${d.encoder_matches === false ? ' (trained with another encoder: retrain)' : ''}`
      : b.audio_detector_set
        ? 'no image detector set'
        : `not trained: run 'parallax train'`;
    lines.push(`baseline      ${b.name}: ${b.items} items; ${det}`);
    const a = b.audio_detector_set;
    if (a) lines.push(`              audio detector set v${a.version} on ${a.n_items} items (encoder ${a.encoder_id})`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}
