// Where the encoder's files live on disk.
//
// Compiled code runs from dist/electron/engine/encoders/ and sources from electron/engine/encoders/
// (under tsx), so paths are found by walking up to the package root rather than by counting `..`.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Nearest folder at or above `start` holding a package.json named `name`. */
export function findPackageDir(start: string, name: string): string {
  let dir = start;
  for (;;) {
    const pkgPath = path.join(dir, 'package.json');
    if (existsSync(pkgPath)) {
      try {
        if ((JSON.parse(readFileSync(pkgPath, 'utf8')) as { name?: unknown }).name === name) return dir;
      } catch {
        // A malformed package.json belongs to something else; keep walking.
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json named "${name}" at or above ${start}`);
    dir = parent;
  }
}

/** The Parallax package root (where package.json, models/ and node_modules/ are). */
export function packageRoot(): string {
  return findPackageDir(path.dirname(fileURLToPath(import.meta.url)), 'parallax');
}

/** Committed model descriptors (`models/*.model.json`). */
export function modelDescriptorDir(): string {
  return path.join(packageRoot(), 'models');
}

/** Install-time build output (`models/build/`, gitignored): converted .onnx files + manifests. */
export function defaultModelDir(): string {
  return path.join(packageRoot(), 'models', 'build');
}

/** Root folder and version of an installed npm package, found the way Node resolves it from here. */
export function installedPackage(name: string): { dir: string; version: string } {
  // Resolve the package's entry point, then walk up: package.json itself is often not exported.
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve(name);
  } catch (err) {
    throw new Error(`npm package ${name} is not installed (${(err as Error).message.split('\n')[0]})`);
  }
  const dir = findPackageDir(path.dirname(entry), name);
  const version = (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version;
  return { dir, version };
}
