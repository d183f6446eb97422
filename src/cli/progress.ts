/** A progress line on stderr for long operations: bytes done, rate, and counts; redrawn on a TTY. */
export class Progress {
  private readonly started = Date.now();
  private lastDraw = 0;
  private bytes = 0;
  private counts: Record<string, number> = {};
  constructor(
    private readonly label: string,
    private readonly totalBytes: number,
    private readonly out: NodeJS.WritableStream & { isTTY?: boolean },
    private readonly everyMs = 500,
  ) {}
  advance(bytes: number): void {
    this.bytes = bytes;
    this.maybeDraw();
  }
  update(counts: Record<string, number>): void {
    this.counts = counts;
    this.maybeDraw();
  }
  done(counts: Record<string, number>): void {
    this.counts = counts;
    this.draw(true);
  }
  private maybeDraw(): void {
    if (Date.now() - this.lastDraw >= this.everyMs) this.draw(false);
  }
  private draw(final: boolean): void {
    this.lastDraw = Date.now();
    const secs = Math.max(0.001, (Date.now() - this.started) / 1000);
    const pct = this.totalBytes > 0 ? `${((100 * Math.min(this.bytes, this.totalBytes)) / this.totalBytes).toFixed(1)}%` : `${(this.bytes / 1e6).toFixed(1)} MB`;
    const counts = Object.entries(this.counts).map(([k, v]) => `${k}=${v}`).join(' ');
    const line = `${this.label}: ${pct} ${(this.bytes / 1e6 / secs).toFixed(1)} MB/s ${counts}`;
    if (this.out.isTTY) this.out.write(`\r${line}${final ? '\n' : ''}`);
    else this.out.write(`${line}\n`);
  }
}
