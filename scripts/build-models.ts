// `npm run build:models` (run by `npm install` via prepare): converts the models described in
// models/*.model.json into models/build/. Fast when nothing changed: see ensureBuiltModel.
//
//   node dist/scripts/build-models.js [--force]
import path from 'node:path';

import { ensureBuiltModel } from '../electron/engine/encoders/build.js';
import { defaultModelDir, modelDescriptorDir, packageRoot } from '../electron/engine/encoders/paths.js';

/**
 * Descriptors built at install, by artifact name (models/<name>.model.json): the default
 * encoder, and the second, architecturally different one the cross-encoder signal compares
 * it with (and whose neighbours the squeeze signal uses as look-alikes).
 */
const TARGETS = ['mobilenet_v2_backbone', 'inception_v3_backbone'];

async function main(): Promise<void> {
  const force = process.argv.includes('--force');
  const outDir = defaultModelDir();
  const rel = (p: string) => path.relative(packageRoot(), p);
  for (const target of TARGETS) {
    const r = await ensureBuiltModel(path.join(modelDescriptorDir(), `${target}.model.json`), outDir, { force });
    const m = r.manifest;
    const from = `${m.source.package}@${m.source.version} ${m.name}`;
    if (r.status === 'up-to-date') {
      console.log(`build-models: ${rel(r.onnxPath)} is up to date (${from}, onnx sha256 ${m.onnxSha256.slice(0, 12)}), ${r.totalMs.toFixed(0)} ms`);
    } else {
      console.log(
        `build-models: converted ${from} → ${rel(r.onnxPath)} (${(m.onnxBytes / 1e6).toFixed(1)} MB, ${m.converter.nodes} nodes, ` +
          `${m.output.dim}-d) in ${(r.convertMs / 1000).toFixed(2)} s (${(r.totalMs / 1000).toFixed(2)} s with checks)`,
      );
    }
  }
}

main().catch((err: unknown) => {
  console.error(`build-models: failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
