import type { NatsConnection } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../errors.ts';

/**
 * Whether a NATS connection is known to be down, from its status events: `disconnect` until
 * `reconnect`. While it is down the client buffers publishes and waits for a reconnect, so a
 * publisher that asks {@link NatsLink.check} first refuses at once (503) instead of waiting out
 * its deadline. A frozen server (SIGSTOP) keeps the TCP connection open and is only noticed by
 * the publish deadline.
 */
export class NatsLink {
  private down = false;
  constructor(private readonly nc: NatsConnection) {
    void this.watch();
  }

  private async watch(): Promise<void> {
    try {
      for await (const s of this.nc.status()) {
        if (s.type === 'disconnect' || s.type === 'reconnecting' || s.type === 'staleConnection') this.down = true;
        else if (s.type === 'reconnect') this.down = false;
      }
    } catch {
      // The iterator ends (or fails) with the connection; isClosed() covers that.
    }
  }

  /** True while the connection is closed, or disconnected and not yet reconnected. */
  get isDown(): boolean {
    return this.down || this.nc.isClosed();
  }

  /** Throws ADAGG_E_NATS_UNAVAILABLE (503) when the connection is known to be down. */
  check(what: string): void {
    if (this.isDown) throw new AdaggError(ErrorCode.NatsUnavailable, `${what}: NATS is not reachable (reconnecting)`);
  }
}
