// Parameter validation shared by the detectors. Parameters arrive from config files, the CLI
// and saved models, so they are checked at construction and fail with the parameter's name.

import type { DetectorState } from '../types.js';

export class ParamError extends RangeError {
  constructor(detector: string, message: string) {
    super(`${detector}: ${message}`);
    this.name = 'ParamError';
  }
}

type Bag = Record<string, unknown> | undefined;

export function intParam(detector: string, params: Bag, key: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const value = params?.[key] ?? fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ParamError(detector, `${key} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

export function numberParam(detector: string, params: Bag, key: string, fallback: number, min: number, max: number, openMin = false): number {
  const value = params?.[key] ?? fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max || (openMin && value === min)) {
    throw new ParamError(detector, `${key} must be a number in ${openMin ? '(' : '['}${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

export function boolParam(detector: string, params: Bag, key: string, fallback: boolean): boolean {
  const value = params?.[key] ?? fallback;
  if (typeof value !== 'boolean') throw new ParamError(detector, `${key} must be a boolean, got ${String(value)}`);
  return value;
}

export function enumParam<T extends string>(detector: string, params: Bag, key: string, fallback: T, allowed: readonly T[]): T {
  const value = params?.[key] ?? fallback;
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    throw new ParamError(detector, `${key} must be one of ${allowed.join(', ')}, got ${String(value)}`);
  }
  return value as T;
}

/** Rejects unknown keys, which are nearly always typos that would silently use a default. */
export function rejectUnknown(detector: string, params: Bag, known: readonly string[]): void {
  for (const key of Object.keys(params ?? {})) {
    if (!known.includes(key)) throw new ParamError(detector, `unknown parameter "${key}" (known: ${known.join(', ')})`);
  }
}

export function checkState(state: Pick<DetectorState, 'version'> & { name: string }, name: string, version: string): void {
  if (!state || state.name !== name) throw new RangeError(`expected a ${name} state, got ${String(state?.name)}`);
  if (state.version !== version) {
    throw new RangeError(`${name}: saved with algorithm version ${state.version}, this build scores with ${version}; retrain`);
  }
}

export function field<T>(state: Record<string, unknown>, key: string, type: 'string' | 'number' | 'object' | 'boolean', what: string): T {
  const value = state[key];
  if (typeof value !== type || value === null) throw new RangeError(`${what}: state field "${key}" missing or not a ${type}`);
  return value as T;
}

export function notFitted(name: string): Error {
  return new Error(`${name}: score() called before fit()`);
}
