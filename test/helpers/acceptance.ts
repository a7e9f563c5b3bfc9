// What the acceptance and shared-data tests share: the held-out split, the per-folder tally,
// and listing a data folder.
import { createHash } from 'node:crypto';
import path from 'node:path';

import { walkMedia } from '../../electron/engine/ingest/walk.js';

/**
 * Deterministic split by file name, independent of directory order: a quarter of the files
 * (first byte of sha256(name) divisible by 4) is held out from the baseline.
 */
export function isHeldOut(file: string): boolean {
  return createHash('sha256').update(path.basename(file)).digest()[0] % 4 === 0;
}

/** Review and block counts per parent folder (the data's groups). */
export function byGroup(items: { path: string | null; decision: string }[]): Record<string, { n: number; review: number; block: number }> {
  const groups: Record<string, { n: number; review: number; block: number }> = {};
  for (const it of items) {
    const g = path.basename(path.dirname(it.path ?? ''));
    groups[g] ??= { n: 0, review: 0, block: 0 };
    groups[g].n++;
    if (it.decision === 'review') groups[g].review++;
    if (it.decision === 'block') groups[g].block++;
  }
  return groups;
}

/** Every readable media file under `dir`, in walk order (unreadable ones are left out). */
export async function listMedia(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const f of walkMedia([dir])) if (!f.error) out.push(f.path);
  return out;
}
