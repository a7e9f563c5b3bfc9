// The catalogue of attacks a red-team run can use, and the eps syntax analysts type.

export type AttackName =
  | 'spsa-pgd'
  | 'spsa-pgd-targeted'
  | 'square'
  | 'universal'
  | 'patch'
  | 'typographic'
  | 'benign-jpeg'
  | 'benign-resize'
  | 'benign-crop'
  | 'benign-color'
  | 'benign-rotate';

export const ATTACK_NAMES: readonly AttackName[] = [
  'spsa-pgd',
  'spsa-pgd-targeted',
  'square',
  'universal',
  'patch',
  'typographic',
  'benign-jpeg',
  'benign-resize',
  'benign-crop',
  'benign-color',
  'benign-rotate',
];

export function isAttackName(name: string): name is AttackName {
  return (ATTACK_NAMES as readonly string[]).includes(name);
}

/**
 * Groups attacks for reports: 'spsa-pgd' (both variants), 'square', 'universal', 'patch',
 * 'typographic', and 'benign' for the controls that must not be flagged.
 */
export function attackFamily(name: AttackName): string {
  if (name.startsWith('benign-')) return 'benign';
  if (name.startsWith('spsa-pgd')) return 'spsa-pgd';
  return name;
}

/** Attacks bounded by an L-inf budget; the others change pixels without one. */
export function usesEps(name: AttackName): boolean {
  return name === 'spsa-pgd' || name === 'spsa-pgd-targeted' || name === 'square' || name === 'universal';
}

export function isTargeted(name: AttackName): boolean {
  return name === 'spsa-pgd-targeted';
}

/**
 * An L-inf budget as typed: "8/255", "0.0314", or "8" (a number above 1 is read as grey
 * levels, i.e. 8 → 8/255). The result is in [0,1] units and must be > 0 and ≤ 1.
 */
export function parseEps(text: string): number {
  const s = String(text).trim();
  const bad = (why: string) =>
    new RangeError(`invalid eps '${text}': ${why} (write it as 8/255, 0.0314, or 8 for 8 grey levels)`);
  if (s === '') throw bad('it is empty');
  const fraction = /^([0-9]*\.?[0-9]+)\s*\/\s*([0-9]*\.?[0-9]+)$/.exec(s);
  let value: number;
  if (fraction) {
    const denominator = Number(fraction[2]);
    if (denominator === 0) throw bad('division by zero');
    value = Number(fraction[1]) / denominator;
  } else {
    if (!/^[+]?([0-9]+\.?[0-9]*|\.[0-9]+)(e[+-]?[0-9]+)?$/i.test(s)) throw bad('not a number or a fraction');
    value = Number(s);
    if (value > 1) value /= 255;
  }
  if (!Number.isFinite(value)) throw bad('not a finite number');
  if (value <= 0) throw bad('it must be greater than 0');
  if (value > 1) throw bad('it is more than the whole [0, 1] pixel range');
  return value;
}
