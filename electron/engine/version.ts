import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

function findPackageJson(): { version: string } {
  // Compiled code runs from dist/electron/engine, sources from electron/engine.
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = require(rel) as { name?: string; version: string };
      if (pkg.name === 'parallax') return pkg;
    } catch {
      // try the next location
    }
  }
  return { version: '0.0.0' };
}

export const ENGINE_VERSION: string = findPackageJson().version;
