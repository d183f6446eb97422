import { jetstream, type JetStreamClient, type PubAck } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../errors.ts';
import { batchMsgId, encodeBatch } from '../model/batch-codec.ts';
import type { Click } from '../model/click.ts';
import { shardOf } from '../model/partition.ts';
import type { HotRoutes } from './hot/hot-routes.ts';
import type { Topology } from './topology.ts';

export interface ProducerOptions {
  shards: number;
  /** Most clicks in one JetStream message. @default 500 */
  maxBatch?: number;
  /** Attempts per message before giving up (same Nats-Msg-Id each time). @default 8 */
  maxAttempts?: number;
  /** PubAck timeout per attempt. @default 5000 */
  ackTimeoutMs?: number;
  /**
   * Watched hot-ad routes (HotRoutes.open(...).watch()): a split ad's clicks are published straight
   * to its child subjects. Without it they go to the ad's shard, which forwards them.
   */
  hotRoutes?: Pick<HotRoutes, 'route' | 'subjectFor'>;
}

export interface PublishResult {
  messages: number;
  /** Messages JetStream dropped as duplicates of an earlier publish (a retry or re-post). */
  duplicates: number;
}

/**
 * The producer API: groups clicks by shard, packs them into MessagePack batches and publishes
 * each with a deterministic `Nats-Msg-Id`, retrying with the same id until JetStream acknowledges.
 * Publishers outside the gateway use this so their batches are exactly what the shard actors read.
 *
 * @example
 * const p = new ClickProducer(nc, topology('adagg'), { shards: 16 });
 * await p.publish([{ click_id: 'c1', ad_id: 'ad-1', ts: Date.now(), country: 'US' }]);
 */
export class ClickProducer {
  private readonly js: JetStreamClient;
  private readonly maxBatch: number;
  private readonly maxAttempts: number;
  private readonly ackTimeoutMs: number;
  constructor(
    nc: NatsConnection,
    private readonly topo: Topology,
    private readonly opts: ProducerOptions,
  ) {
    this.js = jetstream(nc);
    this.maxBatch = opts.maxBatch ?? 500;
    this.maxAttempts = opts.maxAttempts ?? 8;
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 5000;
  }

  /** Resolves once every click is stored in JetStream; rejects with ADAGG_E_PUBLISH_FAILED otherwise. */
  async publish(clicks: readonly Click[]): Promise<PublishResult> {
    const byShard = new Map<number, Click[]>();
    const byHot = new Map<string, { shard: number; clicks: Click[] }>();
    const routes = this.opts.hotRoutes;
    for (const c of clicks) {
      const s = shardOf(c.ad_id, this.opts.shards);
      const hot = routes?.route(c.ad_id);
      if (hot) {
        const subject = routes!.subjectFor(hot, c.click_id);
        let h = byHot.get(subject);
        if (!h) byHot.set(subject, (h = { shard: s, clicks: [] }));
        h.clicks.push(c);
        continue;
      }
      let arr = byShard.get(s);
      if (!arr) byShard.set(s, (arr = []));
      arr.push(c);
    }
    const sends: Array<Promise<PubAck>> = [];
    for (const [shard, arr] of byShard) {
      for (let i = 0; i < arr.length; i += this.maxBatch) {
        const chunk = arr.slice(i, i + this.maxBatch);
        sends.push(this.send(this.topo.clickSubject(shard), encodeBatch(chunk), batchMsgId(shard, chunk)));
      }
    }
    for (const [subject, { shard, clicks: arr }] of byHot) {
      for (let i = 0; i < arr.length; i += this.maxBatch) {
        const chunk = arr.slice(i, i + this.maxBatch);
        // The same id as on the shard's subject: a retry after the route changed is still dropped.
        sends.push(this.send(subject, encodeBatch(chunk), batchMsgId(shard, chunk)));
      }
    }
    const acks = await Promise.all(sends);
    return { messages: acks.length, duplicates: acks.filter((a) => a.duplicate).length };
  }

  /** Publishes one encoded message, retrying with the same id. */
  async send(subject: string, data: Uint8Array, msgID: string): Promise<PubAck> {
    let last: unknown;
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      try {
        return await this.js.publish(subject, data, { msgID, timeout: this.ackTimeoutMs });
      } catch (err) {
        last = err;
        await new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** attempt)));
      }
    }
    throw new AdaggError(ErrorCode.PublishFailed, `publish to ${subject} failed after ${this.maxAttempts} attempts`, {
      cause: last,
    });
  }
}

/** A click refused after it was read (too old for the correction horizon), kept for audit and replay. */
export interface DeadLetter {
  reason: 'too_old' | 'in_future' | 'invalid';
  error: string;
  source: string;
  at: number;
  click?: Click | undefined;
  raw?: string | undefined;
}

/** Publishes dead letters as JSON, one message each, with an id so a retry is not stored twice. */
export class DeadLetterPublisher {
  private readonly js: JetStreamClient;
  constructor(
    nc: NatsConnection,
    private readonly topo: Topology,
  ) {
    this.js = jetstream(nc);
  }
  async publish(letters: ReadonlyArray<{ id: string; letter: DeadLetter }>): Promise<void> {
    await Promise.all(
      letters.map(({ id, letter }) =>
        this.js.publish(this.topo.deadLetterSubject(letter.reason), JSON.stringify(letter), { msgID: id }),
      ),
    );
  }
}
