/**
 * A watchdog that SIGKILLs a detached child server when this process dies without stopping it.
 *
 * Child servers run in their own process group (`detached`), so a terminal's Ctrl-C does not kill
 * them before the final commit. The price is that nothing kills them when this process is
 * SIGKILLed. The watchdog closes that gap: a tiny `sh` in its own group that blocks reading a pipe
 * from this process. The pipe closes when this process dies, however it dies; `read` then sees EOF
 * and the watchdog kills the server. When the server stops normally, {@link ChildWatchdog.disarm}
 * writes `stop` and the watchdog exits without killing anything (no pid reuse hazard).
 */
import { spawn, type ChildProcess } from 'node:child_process';

/** Guards one child server's pid; see the module doc. */
export class ChildWatchdog {
  private readonly proc: ChildProcess | undefined;
  private armed = true;

  constructor(pid: number) {
    try {
      // `read` returns non-zero with x empty on EOF: the parent died, so the server must go too.
      this.proc = spawn('/bin/sh', ['-c', `read x; [ "$x" = stop ] || kill -KILL ${String(pid)} 2>/dev/null`], {
        detached: true,
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      this.proc.on('error', () => undefined); // no sh: the stale-server reaper still covers a killed run
      this.proc.stdin?.on('error', () => undefined);
      // Neither the watchdog nor its pipe may keep this process alive.
      this.proc.unref();
      (this.proc.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    } catch {
      this.proc = undefined;
    }
  }

  /** The server stopped (or is being stopped on purpose): the watchdog exits without a kill. Idempotent. */
  disarm(): void {
    if (!this.armed) return;
    this.armed = false;
    const stdin = this.proc?.stdin;
    if (stdin && !stdin.destroyed) stdin.end('stop\n');
  }
}
