import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../errors.ts';
import type { UnitId } from '../model/shard-state.ts';
import type { Logger } from './logger.ts';
import { toShardQuery, type ShardReply, type ShardRequest, type ShardStatusReply } from './query-protocol.ts';
import type { ShardHost } from './shard-host.ts';
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
      // answer() never rejects; a failing respond (connection closing) must not become an unhandled rejection.
      this.answer(host, msg.data)
        .then((reply) => msg.respond(JSON.stringify(reply)))
        .catch((e: unknown) => this.log.warn({ shard: host.shard, err: e }, 'shard query reply not sent'));
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

  /**
   * The reply to one request: the actor's answer from its mailbox's query lane, or an error code
   * (ADAGG_E_MAILBOX_FULL when that lane is full, ADAGG_E_SHARD_UNAVAILABLE when the actor is not
   * running here, ADAGG_E_BAD_PARAM for an unknown op). Never rejects.
   */
  private async answer(host: ShardHost, data: Uint8Array): Promise<ShardReply<unknown>> {
    try {
      const q = toShardQuery(JSON.parse(new TextDecoder().decode(data)) as ShardRequest);
      if (q.type !== 'status') return { ok: true, result: await host.ask(q) };
      const reply: ShardStatusReply = { ...(await host.ask(q)), epoch: host.epoch, lag: host.lag, node: this.nodeId };
      return { ok: true, result: reply };
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
