// Turning the paths a user gives (files and folders) into the list of files to ingest.
//
// Types come from the bytes (sniff.ts), so files are NOT filtered by extension: a photo saved
// without one, or with the wrong one, must still be scanned, and a hostile file must not be
// able to hide by being named .dat. The one exception is a short list of side files that sit
// next to media in datasets (READMEs, licence tables, annotation JSON, configs): they are
// skipped inside folders because reporting each as "not media" would only bury the real
// errors. `extensions: 'all'` turns that off. A file named explicitly is never skipped.
//
// Order is deterministic: the given paths in the given order, each folder's entries sorted by
// code unit (not locale, which would vary between machines), depth first.

import { lstat, readdir, stat } from 'node:fs/promises';
import path from 'node:path';

export interface WalkEntry {
  path: string;
  /** Why this path cannot be read; absent for a file to ingest. */
  error?: string;
}

export interface WalkOptions {
  /** 'all': also yield the side files (.md, .txt, .csv, .json, .yml, .yaml) found in folders. */
  extensions?: 'all';
}

export const SIDE_FILE_EXTENSIONS: readonly string[] = ['.md', '.txt', '.csv', '.json', '.yml', '.yaml'];

/**
 * Yields every file under `paths`, recursively. Hidden names (starting with '.') are skipped
 * inside folders but honoured when given explicitly. Symbolic links are followed; a folder
 * already visited (a symlink loop, or the same folder given twice) and a file already yielded
 * are not visited again (identity is device and inode, so hard links count as one file). Anything that cannot be read yields `{ path, error }` instead of
 * throwing, so one bad path never stops the walk. Sockets, FIFOs and devices inside folders are
 * skipped silently; given explicitly they yield an error.
 */
export async function* walkMedia(paths: string[], opts: WalkOptions = {}): AsyncGenerator<WalkEntry> {
  const skipSideFiles = opts.extensions !== 'all';
  const seen = new Set<string>();
  for (const root of paths) {
    // Explicit stack rather than recursion: a maliciously deep tree costs memory, not stack.
    const stack: { p: string; explicit: boolean }[] = [{ p: root, explicit: true }];
    while (stack.length > 0) {
      const { p, explicit } = stack.pop()!;
      const info = await stat(p).catch((e: unknown) => e as NodeJS.ErrnoException);
      if (info instanceof Error) {
        yield { path: p, error: await describeStatError(p, info) };
        continue;
      }
      const identity = `${info.dev}:${info.ino}`;
      if (seen.has(identity)) continue;
      seen.add(identity);

      if (info.isFile()) {
        yield { path: p };
      } else if (info.isDirectory()) {
        const names = await readdir(p).catch((e: unknown) => e as NodeJS.ErrnoException);
        if (names instanceof Error) {
          yield { path: p, error: `cannot list folder: ${errnoText(names)}` };
          continue;
        }
        const children = names
          .filter((name) => !name.startsWith('.'))
          .filter((name) => !(skipSideFiles && SIDE_FILE_EXTENSIONS.includes(path.extname(name).toLowerCase())))
          .sort(compareCodeUnits);
        // Pushed in reverse so they pop in sorted order.
        for (let i = children.length - 1; i >= 0; i--) stack.push({ p: path.join(p, children[i]), explicit: false });
      } else if (explicit) {
        yield { path: p, error: 'not a regular file or folder' };
      }
    }
  }
}

/** Number of entries walkMedia would yield (errors included), for progress totals. */
export async function countMedia(paths: string[], opts: WalkOptions = {}): Promise<number> {
  let n = 0;
  for await (const _entry of walkMedia(paths, opts)) n++;
  return n;
}

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function describeStatError(p: string, e: NodeJS.ErrnoException): Promise<string> {
  if (e.code === 'ENOENT') {
    // stat follows links; tell a dangling link apart from a path that is simply not there.
    const link = await lstat(p).catch(() => null);
    if (link?.isSymbolicLink()) return 'broken symbolic link (its target does not exist)';
  }
  return errnoText(e);
}

function errnoText(e: NodeJS.ErrnoException): string {
  switch (e.code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return 'does not exist';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ELOOP':
      return 'too many levels of symbolic links';
    default:
      return `cannot read (${e.code ?? e.message})`;
  }
}
