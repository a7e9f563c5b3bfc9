// Shared test helper: locate the repository root and the shared data folder.
//
// Tests run both from source (`node --import tsx --test test/x.test.ts`) and from the
// compiled output (`node --test dist/test/`), so a fixed number of `..` from this file
// would be wrong in one of the two. Walking up to the package.json named "parallax"
// works from either place.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_NAME = 'parallax';

let cached: string | undefined;

/** Absolute path of the repository root (the folder holding package.json named "parallax"). */
export function repoRoot(): string {
  if (cached !== undefined) return cached;
  const start = path.dirname(fileURLToPath(import.meta.url));
  let dir = start;
  for (;;) {
    const pkgPath = path.join(dir, 'package.json');
    if (existsSync(pkgPath)) {
      try {
        const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { name?: unknown };
        if (pkg.name === PACKAGE_NAME) {
          cached = dir;
          return dir;
        }
      } catch {
        // An unreadable or malformed package.json (e.g. a fixture) is not the root; keep walking.
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new Error(`repoRoot: no package.json named "${PACKAGE_NAME}" above ${start}`);
    }
    dir = parent;
  }
}

/**
 * Path inside the shared data folder, which sits beside the checkout:
 * `sharedData('images', 'library_sample_photos')` → `<repoRoot>/../shared/data/images/library_sample_photos`.
 */
export function sharedData(...parts: string[]): string {
  return path.resolve(repoRoot(), '..', 'shared', 'data', ...parts);
}
