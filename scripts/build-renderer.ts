// Builds the workbench renderer (and the Electron preload, which must be one bundled CommonJS
// file in a sandboxed renderer) into dist/. Type-checks the renderer first: esbuild strips
// types without checking them.
//
//   dist/renderer/index.html, app.js          the React app (ES module)
//   dist/renderer/umap-worker.js               UMAP in a Web Worker
//   dist/renderer/plot-frame.html, .js         the isolated chart frame (plotly runs there)
//   dist/renderer/vendor/plotly.min.js         plotly.js-dist-min, unmodified
//   dist/electron/preload/preload.cjs          the sandboxed preload
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = findRoot(path.dirname(fileURLToPath(import.meta.url)));
const out = path.join(root, 'dist', 'renderer');
const require = createRequire(import.meta.url);

function findRoot(dir: string): string {
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'parallax') return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('build-renderer: cannot find the parallax package root');
    dir = up;
  }
}

function typecheck(project: string): void {
  const tsc = require.resolve('typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', project], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`type errors in ${project}`);
}

async function main(): Promise<void> {
  const started = performance.now();
  typecheck('renderer/tsconfig.json');
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(path.join(out, 'vendor'), { recursive: true });
  const common: esbuild.BuildOptions = {
    bundle: true,
    minify: true,
    sourcemap: true,
    target: ['chrome120'],
    legalComments: 'linked',
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning',
    absWorkingDir: root,
  };
  await Promise.all([
    esbuild.build({ ...common, entryPoints: ['renderer/src/main.tsx'], outfile: path.join(out, 'app.js'), format: 'esm', jsx: 'automatic' }),
    esbuild.build({ ...common, entryPoints: ['renderer/src/map/umap-worker.ts'], outfile: path.join(out, 'umap-worker.js'), format: 'iife' }),
    esbuild.build({ ...common, entryPoints: ['renderer/src/plot/frame.ts'], outfile: path.join(out, 'plot-frame.js'), format: 'iife' }),
    esbuild.build({
      ...common,
      minify: false,
      entryPoints: ['electron/preload/preload.ts'],
      outfile: path.join(root, 'dist', 'electron', 'preload', 'preload.cjs'),
      format: 'cjs',
      platform: 'node',
      external: ['electron'],
    }),
  ]);
  for (const f of ['index.html', 'plot-frame.html', 'styles.css', 'plot-frame.css']) {
    fs.copyFileSync(path.join(root, 'renderer', f), path.join(out, f));
  }
  fs.copyFileSync(require.resolve('plotly.js-dist-min/plotly.min.js'), path.join(out, 'vendor', 'plotly.min.js'));
  process.stderr.write(`renderer built into ${path.relative(root, out)} in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`build-renderer: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
