import { createHash } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { encodeRiskMessage, type PresenceMessage, type RiskOut, type VerdictMessage } from '../model/risk-messages.ts';
import { ClickProducer } from './producer.ts';
import type { Topology } from './topology.ts';

/** Reports or verdicts per stream message (a few hundred bytes each: well under NATS max_payload). */
const BATCH_ITEMS = 1000;

/**
 * Publishes a shard actor's risk messages (presence reports, spread verdicts: docs/risk.md) into
 * the shard subjects they address, before the commit that covers them: one `batch` stream message
 * per addressed shard (chunked), not one per report. Reports and verdicts are absolute values, so
 * only the last one per group (and reporting shard) since the previous commit is sent. A batch's id
 * is the hash of its content: a replay after a crash that re-creates the same batch is dropped by
 * JetStream within its duplicate window; any other repeat is applied idempotently. Sent through
 * the producer's retrying publish (the same id on every attempt); a failure fails the commit, and
 * the incarnation restarts and replays.
 */
export class RiskOutboxPublisher {
  private readonly producer: ClickProducer;
  constructor(
    nc: NatsConnection,
    private readonly topo: Topology,
    shards: number,
  ) {
    this.producer = new ClickProducer(nc, topo, { shards });
  }

  async publish(out: readonly RiskOut[]): Promise<void> {
    await Promise.all(
      riskBatches(out).map((b) => this.producer.send(this.topo.clickSubject(b.to), b.bytes, `riskb-${b.to}-${createHash('sha256').update(b.bytes).digest('hex').slice(0, 32)}`)),
    );
  }
}

/**
 * An outbox as stream messages: per addressed shard, the last report per (group, reporting shard)
 * and the last verdict per group, in outbox order, `BATCH_ITEMS` per message.
 */
export function riskBatches(out: readonly RiskOut[]): Array<{ to: number; bytes: Uint8Array }> {
  const byTo = new Map<number, Map<string, PresenceMessage | VerdictMessage>>();
  for (const o of out) {
    const m = o.msg;
    if (m.kind !== 'presence' && m.kind !== 'verdict') throw new Error(`risk outbox: unexpected ${m.kind} message`);
    let items = byTo.get(o.to);
    if (!items) byTo.set(o.to, (items = new Map()));
    const k = `${m.kind}\u0000${m.rule}\u0000${m.window}\u0000${m.key}\u0000${m.kind === 'presence' ? m.from : ''}`;
    items.delete(k); // the newer one goes last, after whatever came in between
    items.set(k, m);
  }
  const batches: Array<{ to: number; bytes: Uint8Array }> = [];
  for (const [to, items] of byTo) {
    const list = [...items.values()];
    for (let i = 0; i < list.length; i += BATCH_ITEMS) batches.push({ to, bytes: encodeRiskMessage({ kind: 'batch', items: list.slice(i, i + BATCH_ITEMS) }) });
  }
  return batches;
}
