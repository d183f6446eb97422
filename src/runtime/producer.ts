import { jetstream, JetStreamApiError, type JetStreamClient, type PubAck } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../errors.ts';
import { batchMsgId, encodeBatch } from '../model/batch-codec.ts';
import type { Click } from '../model/click.ts';
import { normalizeCountry } from '../model/country.ts';
import { shardOf } from '../model/partition.ts';
import type { HotRoutes } from './hot/hot-routes.ts';
import { NatsLink } from './nats-link.ts';
import type { Topology } from './topology.ts';

export interface ProducerOptions {
  shards: number;
  /** Most clicks in one JetStream message. @default 500 */
  maxBatch?: number;
  /** Attempts per message before giving up (same Nats-Msg-Id each time). @default 8 */
  maxAttempts?: number;
  /** PubAck timeout per attempt (never past the deadline). @default 5000 */
  ackTimeoutMs?: number;
  /**
   * Deadline of one message, all attempts included: past it, or at once while the connection is
   * known to be down, the publish fails with ADAGG_E_NATS_UNAVAILABLE, so a caller (POST
   * /v1/clicks, ADAGG_PUBLISH_TIMEOUT_MS) answers 503 in about this time while NATS is frozen or
   * unreachable. @default none: every attempt is made, riding out a reconnect
   */
  publishTimeoutMs?: number | undefined;
  /**
   * Watched hot-ad routes (HotRoutes.open(...).watch()): a split ad's clicks are published straight
   * to its child subjects. Without it they go to the ad's shard, which forwards them.
   */
  hotRoutes?: Pick<HotRoutes, 'route' | 'subjectFor'>;
  /**
   * `map`: a click's ISO 3166 alpha-3 `country` (`USA`) is published as alpha-2 (`US`), as the
   * gateway stores it; `keep`: as given (ADAGG_COUNTRY_ALPHA3). @default 'map'
   */
  countryAlpha3?: string;
}

export interface PublishResult {
  messages: number;
  /** Messages JetStream dropped as duplicates of an earlier publish (a retry or re-post). */
  duplicates: number;
  /** Clicks in those duplicate messages: already ingested by an identical earlier batch. */
  duplicateClicks: number;
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
  private readonly publishTimeoutMs: number | undefined;
  private readonly link: NatsLink | undefined;
  constructor(
    nc: NatsConnection,
    private readonly topo: Topology,
    private readonly opts: ProducerOptions,
  ) {
    this.js = jetstream(nc);
    this.maxBatch = opts.maxBatch ?? 500;
    this.maxAttempts = opts.maxAttempts ?? 8;
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 5000;
    this.publishTimeoutMs = opts.publishTimeoutMs;
    this.link = opts.publishTimeoutMs === undefined ? undefined : new NatsLink(nc);
  }

  /**
   * Resolves once every click is stored in JetStream; rejects with ADAGG_E_NATS_UNAVAILABLE when
   * NATS is known to be down or did not acknowledge within `publishTimeoutMs`, ADAGG_E_PUBLISH_FAILED
   * for other failures. A rejected publish may still have stored some messages: publishing the same
   * clicks again gives the same ids, which JetStream drops within its duplicate window.
   */
  async publish(clicks: readonly Click[]): Promise<PublishResult> {
    if (clicks.length > 0) this.link?.check('publish');
    const byShard = new Map<number, Click[]>();
    const byHot = new Map<string, { shard: number; clicks: Click[] }>();
    const routes = this.opts.hotRoutes;
    for (const given of clicks) {
      const c = this.normalized(given);
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
    const sizes: number[] = [];
    for (const [shard, arr] of byShard) {
      for (let i = 0; i < arr.length; i += this.maxBatch) {
        const chunk = arr.slice(i, i + this.maxBatch);
        sizes.push(chunk.length);
        sends.push(this.send(this.topo.clickSubject(shard), encodeBatch(chunk), batchMsgId(shard, chunk)));
      }
    }
    for (const [subject, { shard, clicks: arr }] of byHot) {
      for (let i = 0; i < arr.length; i += this.maxBatch) {
        const chunk = arr.slice(i, i + this.maxBatch);
        sizes.push(chunk.length);
        // The same id as on the shard's subject: a retry after the route changed is still dropped.
        sends.push(this.send(subject, encodeBatch(chunk), batchMsgId(shard, chunk)));
      }
    }
    const acks = await Promise.all(sends);
    let duplicateClicks = 0;
    acks.forEach((a, i) => (duplicateClicks += a.duplicate ? (sizes[i] ?? 0) : 0));
    return { messages: acks.length, duplicates: acks.filter((a) => a.duplicate).length, duplicateClicks };
  }

  /** The click as published: its country code normalised (a copy only when that changes it). */
  private normalized(c: Click): Click {
    if (c.country === undefined) return c;
    const country = normalizeCountry(c.country, this.opts.countryAlpha3);
    return country === c.country ? c : { ...c, country };
  }

  /** Publishes one encoded message, retrying with the same id until acknowledged or the deadline. */
  async send(subject: string, data: Uint8Array, msgID: string): Promise<PubAck> {
    const deadline = this.publishTimeoutMs === undefined ? Infinity : Date.now() + this.publishTimeoutMs;
    let last: unknown;
    let attempt = 0;
    while (attempt < this.maxAttempts) {
      attempt++;
      const left = deadline - Date.now();
      if (left <= 0 || this.link?.isDown === true) break;
      try {
        return await this.js.publish(subject, data, { msgID, timeout: Math.max(1, Math.min(this.ackTimeoutMs, left)) });
      } catch (err) {
        last = err;
        const pause = Math.min(2000, 50 * 2 ** attempt, deadline - Date.now());
        if (pause > 0) await new Promise((r) => setTimeout(r, pause));
      }
    }
    // Out of time or link (not a refusal the server answered, such as a full stream): an outage.
    if (this.publishTimeoutMs !== undefined && !(last instanceof JetStreamApiError)) {
      throw new AdaggError(ErrorCode.NatsUnavailable, `publish to ${subject}: JetStream did not acknowledge within ${this.publishTimeoutMs} ms (NATS unreachable or overloaded); retrying the request is safe`, {
        cause: last,
      });
    }
    throw new AdaggError(ErrorCode.PublishFailed, `publish to ${subject} failed after ${attempt} attempts: ${(last as Error | undefined)?.message ?? 'unknown error'}`, {
      cause: last,
    });
  }
}

// Dead letters moved to their own module (capped records); re-exported for existing imports.
export { DeadLetterPublisher, type DeadLetter } from './dead-letter.ts';
