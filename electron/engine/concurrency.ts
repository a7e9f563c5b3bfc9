// Small async building blocks for the scan pipeline.

/**
 * Maps `fn` over `source` with at most `window` calls in flight, yielding results in input
 * order. While the consumer is busy (for example awaiting the encoder on the previous
 * batch), the next `window` items keep decoding: that overlap is what keeps whole-scan
 * throughput close to the raw encoder's.
 */
export async function* mapOrdered<T, R>(
  source: AsyncIterable<T> | Iterable<T>,
  window: number,
  fn: (item: T) => Promise<R>,
): AsyncGenerator<R> {
  const inFlight: Promise<R>[] = [];
  for await (const item of source) {
    const p = fn(item);
    // Avoid unhandled-rejection noise for promises awaited later.
    p.catch(() => undefined);
    inFlight.push(p);
    if (inFlight.length >= window) yield await inFlight.shift()!;
  }
  while (inFlight.length > 0) yield await inFlight.shift()!;
}

export class CancelledError extends Error {
  constructor(what = 'operation') {
    super(`${what} cancelled`);
    this.name = 'CancelledError';
  }
}

export function throwIfAborted(signal: AbortSignal | undefined, what?: string): void {
  if (signal?.aborted) throw new CancelledError(what);
}
