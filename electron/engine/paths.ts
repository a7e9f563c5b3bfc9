import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | null = null;

/** The installed package's root (sources run from electron/engine, builds from dist/electron/engine). */
export function packageRoot(): string {
  if (cached) return cached;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'parallax') {
      cached = dir;
      return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('cannot find the parallax package root');
    dir = parent;
  }
}

/** The licence-clean demo media that ships with the repository. */
export function demoDir(): string {
  return path.join(packageRoot(), 'models', 'demo');
}
