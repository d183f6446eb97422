import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../errors.ts';
import type { Logger } from './logger.ts';
import type { ShardReply, ShardRequest, ShardStatusReply } from './query-protocol.ts';
import type { ShardHost } from './shard-host.ts';
import type { Topology } from './topology.ts';

/**
 * Answers queries for the shards this node owns on `<prefix>.q.shard.<n>`. The gateway finds the
 * owner through the subject alone, so it needs no list of nodes. Subjects use a queue group so
 * that during a move only one owner answers.
 */
export class QueryResponder {
  private readonly subs = new Map<number, Subscription>();
  constructor(
    private readonly nc: NatsConnection,
    private readonly topo: Topology,
    private readonly nodeId: string,
    private readonly log: Logger,
  ) {}

  serve(host: ShardHost): void {
    const sub = this.nc.subscribe(this.topo.querySubject(host.shard), {
      queue: 'owners',
      callback: (err, msg) => {
        if (err) return;
        void this.answer(host, msg.data).then((reply) => msg.respond(JSON.stringify(reply)));
      },
    });
    this.subs.set(host.shard, sub);
  }

  unserve(shard: number): void {
    this.subs.get(shard)?.unsubscribe();
    this.subs.delete(shard);
  }

  private async answer(host: ShardHost, data: Uint8Array): Promise<ShardReply<unknown>> {
    try {
      const req = JSON.parse(new TextDecoder().decode(data)) as ShardRequest;
      switch (req.op) {
        case 'ad':
          return { ok: true, result: await host.call((a) => a.queryAd(req)) };
        case 'top':
          return { ok: true, result: await host.call((a) => a.queryTop(req)) };
        case 'status': {
          const st = await host.call((a) => a.status());
          const reply: ShardStatusReply = { ...st, epoch: host.epoch, lag: host.lag, node: this.nodeId };
          return { ok: true, result: reply };
        }
        case 'rank-specs':
          return {
            ok: true,
            result: await host.call((a) => {
              a.addRankSpecs(req.specs, req.leaseMs);
              return a.rankingState();
            }),
          };
        case 'rank-state':
          return { ok: true, result: await host.call((a) => a.rankingState()) };
        default:
          throw new AdaggError(ErrorCode.BadParam, `unknown shard query op`);
      }
    } catch (err) {
      const code = err instanceof AdaggError ? err.code : ErrorCode.Internal;
      if (code === ErrorCode.Internal) this.log.error({ shard: host.shard, err }, 'shard query failed');
      return { ok: false, code, error: err instanceof Error ? err.message : String(err) };
    }
  }

  close(): void {
    for (const s of this.subs.values()) s.unsubscribe();
    this.subs.clear();
  }
}
