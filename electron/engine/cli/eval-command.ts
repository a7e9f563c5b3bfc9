// `parallax eval --clean DIR --attacked DIR [--attacked DIR ...] [--control DIR ...]
//                [--baseline NAME] [--json] [--out FILE]`
// Scans clean and attacked items with the active detector set and reports AUROC, TPR at 1%
// and 5% FPR and block/review rates, fused and per signal, against the mitigation's
// reference fusion, per attack family (see electron/engine/eval/run-eval.ts).
import fs from 'node:fs';
import { parseArgs } from 'node:util';

import type { ParallaxConfig } from '../../../shared/config.js';
import { Engine } from '../engine.js';
import { readAttackSet, runEval, type EvalReport } from '../eval/run-eval.js';

const USAGE = `Usage: parallax eval --clean DIR --attacked DIR [--attacked DIR ...] [--control DIR ...]
                     [--baseline NAME] [--json] [--out FILE]

  --clean DIR      legitimate items never in the baseline (false positives are counted here)
  --attacked DIR   attacked items; a red-team folder (manifest.json, format parallax.redteam/1)
                   is grouped by its family, any other folder is one family named after it;
                   a manifest whose family is 'benign' is a control, not an attack
  --control DIR    legitimate-but-unusual or benign items: rates reported, never pooled as attacks
  --json           one JSON document on standard output
  --out FILE       also write the JSON report to FILE`;

export async function evalCommand(argv: string[], ctx: { dataDir: string; config: ParallaxConfig }): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      allowPositionals: false,
      options: {
        clean: { type: 'string' },
        attacked: { type: 'string', multiple: true },
        control: { type: 'string', multiple: true },
        baseline: { type: 'string' },
        json: { type: 'boolean', default: false },
        out: { type: 'string' },
        quiet: { type: 'boolean', short: 'q', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    process.stderr.write(`parallax eval: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!values.clean || !values.attacked?.length) {
    process.stderr.write(`parallax eval: --clean and at least one --attacked are required\n\n${USAGE}\n`);
    return 2;
  }
  let sets;
  try {
    sets = [
      ...values.attacked.map((d) => readAttackSet(d)),
      ...(values.control ?? []).map((d) => readAttackSet(d, { control: true })),
    ];
    if (!fs.existsSync(values.clean)) throw new Error(`${values.clean}: no such folder`);
  } catch (err) {
    process.stderr.write(`parallax eval: ${(err as Error).message}\n`);
    return 2;
  }
  const names = new Set<string>();
  for (const s of sets) {
    if (names.has(s.name)) {
      process.stderr.write(`parallax eval: two folders are named '${s.name}'; give each set its own folder name\n`);
      return 2;
    }
    names.add(s.name);
  }

  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.on('SIGINT', onSigint);
  const engine = await Engine.open({ dataDir: ctx.dataDir, config: ctx.config });
  try {
    const report = await runEval(engine, {
      clean: values.clean,
      attacked: sets,
      baseline: values.baseline,
      signal: controller.signal,
      onProgress: (line) => {
        if (!values.quiet) process.stderr.write(`${line}\n`);
      },
    });
    const json = `${JSON.stringify(report, null, 2)}\n`;
    if (values.out) fs.writeFileSync(values.out, json);
    process.stdout.write(values.json ? json : formatReport(report));
    return 0;
  } catch (err) {
    process.stderr.write(`parallax eval: ${err instanceof Error ? err.message : String(err)}\n`);
    return controller.signal.aborted ? 130 : 1;
  } finally {
    process.off('SIGINT', onSigint);
    await engine.close();
  }
}

/** A plain-text table: one row per set and family, fused against reference. */
export function formatReport(r: EvalReport): string {
  const f = (x: number | undefined) => (x === undefined ? '   -  ' : x.toFixed(3).padStart(6));
  const lines = [
    `clean: ${r.clean.n} items, block ${f(r.clean.block_rate)}, review+ ${f(r.clean.review_rate)}   (encoder ${r.engine.encoder_id}, detector set v${r.engine.detector_set?.version ?? '?'})`,
    '',
    `${'set / family'.padEnd(28)} ${'n'.padStart(4)}  fused: AUROC  TPR@1%  TPR@5%   block  review+ | reference: AUROC  TPR@1%  TPR@5%`,
  ];
  const row = (name: string, g: EvalReport['sets'][string] | EvalReport['families'][string]) => {
    const ref = g.reference;
    lines.push(
      `${name.padEnd(28)} ${String(g.n).padStart(4)}        ${f(g.fused.auroc)}  ${f(g.fused.tpr_at_1pct_fpr)}  ${f(g.fused.tpr_at_5pct_fpr)}  ${f(g.fused.block_rate)}  ${f(g.fused.review_rate)} |            ${f(ref?.auroc)}  ${f(ref?.tpr_at_1pct_fpr)}  ${f(ref?.tpr_at_5pct_fpr)}`,
    );
  };
  for (const [name, g] of Object.entries(r.sets)) row(`${name}${g.control ? ' (control)' : ''}`, g);
  lines.push('');
  for (const [name, g] of Object.entries(r.families)) row(`family ${name}${g.control ? ' (control)' : ''}`, g);
  if (r.effective) {
    lines.push('', `effective attacks only: embedding shift > ${r.effective.min_embedding_shift.toFixed(3)} (the ${Math.round(r.effective.quantile * 100)}th percentile of ${r.effective.n_benign} benign edits' shifts)`);
    for (const [name, g] of Object.entries(r.sets)) {
      if (g.control) continue;
      const e = g.effective;
      lines.push(`${name.padEnd(28)} ${`${e?.n ?? 0}/${g.n}`.padStart(7)}     ${e ? `${f(e.auroc)}  ${f(e.tpr_at_1pct_fpr)}  ${f(e.tpr_at_5pct_fpr)}` : '  (none, or no shifts in its manifest)'}`);
    }
  }
  if (r.fused) {
    lines.push('', `all attacks pooled: fused AUROC ${f(r.fused.auroc)} TPR@1% ${f(r.fused.tpr_at_1pct_fpr)}; reference AUROC ${f(r.reference?.auroc)} TPR@1% ${f(r.reference?.tpr_at_1pct_fpr)}`);
    lines.push(`per signal (pooled): ${Object.entries(r.signals).map(([k, m]) => `${k} ${m.auroc.toFixed(3)}/${m.tpr_at_1pct_fpr.toFixed(2)}`).join(', ')}`);
  }
  if (r.errors.length > 0) lines.push('', `${r.errors.length} items could not be scanned (see --json)`);
  return `${lines.join('\n')}\n`;
}
