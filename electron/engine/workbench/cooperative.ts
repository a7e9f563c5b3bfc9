// Long CPU work on the server's thread (PCA, drift statistics, re-scoring) runs in slices: a
// Ticker says when the current slice has used its budget, and `yieldToLoop` lets pending
// requests, WebSocket frames and timers run before the next slice.

/** Resolves after the event loop has had a turn (I/O callbacks included, unlike a microtask). */
export function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class Ticker {
  private last = performance.now();

  constructor(private readonly budgetMs = 12) {}

  /** Yields to the event loop when this slice has run longer than its budget. */
  async tick(signal?: AbortSignal): Promise<void> {
    if (performance.now() - this.last < this.budgetMs) return;
    await yieldToLoop();
    this.last = performance.now();
    if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('aborted');
  }
}
