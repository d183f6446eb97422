/**
 * Live progress on stderr, ~2×/s: phase, events sent, events/s, lag. On a TTY one line is
 * rewritten in place; otherwise a line is appended every second (for logs of background runs).
 */
import { rate, int } from './stats.ts';

export interface ProgressState {
  phase: string;
  /** Events acknowledged by JetStream (or accepted over HTTP) so far. */
  sent: number;
  /** Events fully processed (committed, consumed, applied) so far; undefined if not tracked. */
  done?: number | undefined;
  /** Free text appended to the line. */
  note?: string | undefined;
}

export class Progress {
  private state: ProgressState = { phase: 'init', sent: 0 };
  private last = { t: Date.now(), sent: 0, done: 0 };
  private timer: NodeJS.Timeout | undefined;
  private readonly tty = process.stderr.isTTY === true;
  private lastPrint = 0;
  private readonly startedAt = Date.now();

  start(): void {
    this.timer = setInterval(() => this.render(), 500);
    this.timer.unref();
  }

  set(s: Partial<ProgressState>): void {
    const phaseChanged = s.phase !== undefined && s.phase !== this.state.phase;
    this.state = { ...this.state, ...s };
    if (phaseChanged) {
      this.last = { t: Date.now(), sent: this.state.sent, done: this.state.done ?? 0 };
      this.log(`── ${this.state.phase}`);
    }
  }

  /** A permanent line (results, warnings) that does not get overwritten. */
  log(line: string): void {
    if (this.tty) process.stderr.write(`\r\x1b[K${line}\n`);
    else process.stderr.write(`${line}\n`);
  }

  private render(): void {
    const now = Date.now();
    const dt = (now - this.last.t) / 1000;
    if (dt <= 0) return;
    const s = this.state;
    const sendRate = (s.sent - this.last.sent) / dt;
    const doneRate = s.done === undefined ? NaN : (s.done - this.last.done) / dt;
    this.last = { t: now, sent: s.sent, done: s.done ?? 0 };
    const elapsed = ((now - this.startedAt) / 1000).toFixed(0).padStart(4);
    const parts = [
      `[${elapsed}s] ${s.phase}`,
      `sent ${int(s.sent)} (${rate(sendRate)}/s)`,
      ...(s.done !== undefined ? [`done ${int(s.done)} (${rate(doneRate)}/s)`, `lag ${int(s.sent - s.done)}`] : []),
      ...(s.note ? [s.note] : []),
    ];
    const line = parts.join(' | ');
    if (this.tty) process.stderr.write(`\r\x1b[K${line.slice(0, (process.stderr.columns || 160) - 1)}`);
    else if (now - this.lastPrint >= 1000) {
      this.lastPrint = now;
      process.stderr.write(`${line}\n`);
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.tty) process.stderr.write('\r\x1b[K');
  }
}
