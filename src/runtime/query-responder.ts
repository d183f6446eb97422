import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../errors.ts';
import type { Logger } from './logger.ts';
import type { ShardReply, ShardRequest, ShardStatusReply } from './query-protocol.ts';
import type { ShardHost } from './shard-host.ts';
import type { UnitId } from './shard-store.ts';
import type { Topology } from './topology.ts';

/**
 * Answers queries for the shards this node owns on `<prefix>.q.shard.<n>`. The gateway finds the
 * owner through the subject alone, so it needs no list of nodes. Subjects use a queue group so
 * that during a move only one owner answers.
 */
export class QueryResponder {
  private readonly subs = new Map<UnitId, Subscription[]>();
  constructor(
    private readonly nc: NatsConnection,
    private readonly topo: Topology,
    private readonly nodeId: string,
    private readonly log: Logger,
  ) {}

  /**
   * Answers on the shard's subject (queue group: any owner) and on `<subject>.<node>`, which the
   * gateway uses when the placement table names the owner: a frozen or stale former owner then
   * never receives (or answers) the shard's queries.
   */
  serve(host: ShardHost): void {
    const callback = (err: Error | null, msg: { data: Uint8Array; respond(d: string): boolean }): void => {
      if (err) return;
      void this.answer(host, msg.data).then((reply) => msg.respond(JSON.stringify(reply)));
    };
    const subject = this.topo.querySubject(host.shard);
    this.subs.set(host.shard, [
      this.nc.subscribe(subject, { queue: 'owners', callback }),
      this.nc.subscribe(`${subject}.${this.nodeId}`, { callback }),
    ]);
  }

  unserve(shard: UnitId): void {
    for (const s of this.subs.get(shard) ?? []) s.unsubscribe();
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
        case 'hot-seen':
          // Answered at once, outside mailbox order: the answer does not depend on stream position.
          return { ok: true, result: host.peek((a) => a.hotSeen(req.ad, req.gen, req.hashes)) };
        case 'hot-status':
          return { ok: true, result: await host.call((a) => a.hotStatus()) };
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
    for (const subs of this.subs.values()) for (const s of subs) s.unsubscribe();
    this.subs.clear();
  }
}
