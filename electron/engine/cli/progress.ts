// A progress bar on standard error, so standard output stays clean for --json.
// On a terminal it redraws one line; elsewhere (CI logs, pipes) it prints a line every 10%.

export class ProgressBar {
  private lastPercentLogged = -1;
  private lastDraw = 0;
  private readonly started = Date.now();
  private active = false;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly enabled = true,
  ) {}

  update(stage: string, done: number, total: number): void {
    if (!this.enabled) return;
    const fraction = total > 0 ? Math.min(1, done / total) : 0;
    const percent = Math.floor(fraction * 100);
    const elapsed = (Date.now() - this.started) / 1000;
    const rate = elapsed > 0 ? done / elapsed : 0;
    const eta = rate > 0 && total > done ? Math.round((total - done) / rate) : 0;
    if (this.stream.isTTY) {
      const now = Date.now();
      if (now - this.lastDraw < 80 && done < total) return;
      this.lastDraw = now;
      const width = 28;
      const filled = Math.round(fraction * width);
      const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
      const line = `${stage.padEnd(14)} ${bar} ${String(percent).padStart(3)}% ${done}/${total}  ${rate.toFixed(1)}/s  eta ${eta}s`;
      this.stream.write(`\r${line.slice(0, (this.stream.columns ?? 100) - 1)}\x1b[K`);
      this.active = true;
    } else {
      const step = Math.floor(percent / 10) * 10;
      if (step !== this.lastPercentLogged && (step > this.lastPercentLogged || done === total)) {
        this.lastPercentLogged = step;
        this.stream.write(`${stage}: ${done}/${total} (${step}%)\n`);
      }
    }
  }

  done(): void {
    if (this.active && this.stream.isTTY) this.stream.write('\n');
    this.active = false;
  }
}
