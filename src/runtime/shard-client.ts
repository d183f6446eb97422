import type { NatsConnection } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../errors.ts';
import type { ShardReply, ShardRequest } from './query-protocol.ts';
import type { Topology } from './topology.ts';

/**
 * Asks the owner of a shard over NATS request/reply. The owner is found by subject alone; while it
 * restarts or moves there is no responder for a moment, so the request is retried briefly.
 */
export class ShardClient {
  constructor(
    private readonly nc: NatsConnection,
    private readonly topo: Topology,
    private readonly timeoutMs: number,
    private readonly defaultAttempts = 4,
    /** The shard's owner per the placement table (null: none known, ask any owner). */
    private readonly ownerOf: (shard: number) => Promise<string | null> = async () => null,
  ) {}

  async ask<T>(shard: number, req: ShardRequest, attempts = this.defaultAttempts): Promise<T> {
    const payload = JSON.stringify(req);
    let last: unknown;
    for (let i = 0; i < attempts; i++) {
      try {
        // Address the owner the placement table names, re-read on every attempt (it may be moving).
        const owner = await this.ownerOf(shard).catch(() => null);
        const subject = owner ? `${this.topo.querySubject(shard)}.${owner}` : this.topo.querySubject(shard);
        const msg = await this.nc.request(subject, payload, { timeout: this.timeoutMs });
        const reply = JSON.parse(msg.string()) as ShardReply<T>;
        if (reply.ok) return reply.result;
        last = new AdaggError(reply.code, reply.error);
        if (reply.code !== ErrorCode.ShardUnavailable) throw last;
      } catch (err) {
        if (err instanceof AdaggError && err.code !== ErrorCode.ShardUnavailable) throw err;
        last = err;
      }
      if (i + 1 < attempts) await new Promise((r) => setTimeout(r, 250 * (i + 1)));
    }
    throw new AdaggError(ErrorCode.ShardUnavailable, `no owner of shard ${shard} answered`, { cause: last, details: { shard } });
  }
}
