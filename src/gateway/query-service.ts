import type { NatsConnection } from '@nats-io/transport-node';
import type { Redis } from 'ioredis';
import { shardOf } from '../model/partition.ts';
import { isoOf, MINUTE_MS, minuteStartMs } from '../model/time.ts';
import { topN, type Ranked } from '../model/top-n.ts';
import type { AdQueryReply, ShardRequest, ShardStatusReply, TopQueryReply } from '../runtime/query-protocol.ts';
import { placementOwnerLookup } from '../runtime/placement/owner-lookup.ts';
import { ShardClient } from '../runtime/shard-client.ts';
import type { RedisKeys } from '../runtime/redis-keys.ts';
import type { Topology } from '../runtime/topology.ts';

export interface Filter {
  dim: string;
  value: string;
}

export interface MinuteCount {
  minute: string;
  count: number;
  final: boolean;
}

export interface AdCountResult {
  ad_id: string;
  from: string;
  to: string;
  count: number;
  minutes: MinuteCount[];
  watermark: string | null;
}

export interface PopularResult {
  from: string;
  to: string;
  ads: Ranked[];
}

export interface ShardMeta {
  shard: number;
  seq: number;
  watermark: number;
  closedThrough: number;
  epoch: number;
}

export interface QueryServiceOptions {
  shards: number;
  queryTimeoutMs: number;
  /** Attempts of a shard request while its owner is restarting or moving. @default 4 */
  attempts?: number;
}

/**
 * Answers count queries by combining the owning shard actor's in-memory minutes (asked over NATS
 * request/reply) with final minutes from Redis. The actor is asked first; every minute it does not
 * hold and that it has closed is committed in Redis by then, so nothing is counted twice or missed.
 */
export class QueryService {
  private readonly client: ShardClient;
  constructor(
    nc: NatsConnection,
    private readonly redis: Redis,
    topo: Topology,
    private readonly keys: RedisKeys,
    private readonly opts: QueryServiceOptions,
  ) {
    this.client = new ShardClient(nc, topo, opts.queryTimeoutMs, opts.attempts ?? 6, placementOwnerLookup(redis, keys.prefix));
  }

  async adCount(adId: string, fromMinute: number, toMinute: number, filter?: Filter): Promise<AdCountResult> {
    const shard = shardOf(adId, this.opts.shards);
    const reply = await this.ask<AdQueryReply>(shard, {
      op: 'ad',
      adId,
      fromMinute,
      toMinute,
      dim: filter?.dim,
      value: filter?.value,
    });
    const held = new Map(reply.minutes);
    const corrected = new Map(reply.corrections);
    const fromStore: number[] = [];
    for (let m = fromMinute; m < toMinute; m++) {
      if (!held.has(m) && !corrected.has(m) && m <= reply.closedThrough) fromStore.push(m);
    }
    const stored = new Map<number, number>();
    if (fromStore.length > 0) {
      const p = this.redis.pipeline();
      for (const m of fromStore) p.hget(this.keys.counts(shard, m, filter?.dim ?? null, filter?.value ?? null), adId);
      const res = (await p.exec()) ?? [];
      res.forEach(([err, v], i) => {
        if (err) throw err;
        stored.set(fromStore[i]!, Number(v ?? 0));
      });
    }
    const minutes: MinuteCount[] = [];
    let total = 0;
    for (let m = fromMinute; m < toMinute; m++) {
      const count = held.get(m) ?? corrected.get(m) ?? stored.get(m) ?? 0;
      total += count;
      minutes.push({ minute: isoOf(minuteStartMs(m)), count, final: m <= reply.closedThrough });
    }
    return {
      ad_id: adId,
      from: isoOf(minuteStartMs(fromMinute)),
      to: isoOf(minuteStartMs(toMinute)),
      count: total,
      minutes,
      watermark: reply.watermark >= 0 ? isoOf(reply.watermark) : null,
    };
  }

  /**
   * Exact top `n` over [toMinute − window, toMinute). `toMinute` defaults to the end of the latest
   * minute every shard has closed and committed.
   */
  async popular(n: number, window: number, toMinute: number | undefined, filter?: Filter): Promise<PopularResult> {
    const metas = await this.shardMetas();
    const to = toMinute ?? defaultEnd(metas);
    const from = to - window;
    const totals = new Map<string, number>();
    const add = (ad: string, c: number): void => void totals.set(ad, (totals.get(ad) ?? 0) + c);
    await Promise.all(
      [...Array(this.opts.shards).keys()].map(async (shard) => {
        // Always ask the owner: besides open minutes it holds corrections not yet committed.
        const r = await this.ask<TopQueryReply>(shard, {
          op: 'top',
          fromMinute: from,
          toMinute: to,
          dim: filter?.dim,
          value: filter?.value,
        });
        const covered = new Set(r.covered);
        const overrides = new Map(r.corrections.map(([m, flat]) => [m, toMap(flat)]));
        for (let i = 0; i + 1 < r.counts.length; i += 2) add(r.counts[i] as string, r.counts[i + 1] as number);
        const minutes: number[] = [];
        for (let m = from; m < to && m <= r.closedThrough; m++) if (!covered.has(m)) minutes.push(m);
        if (minutes.length === 0) return;
        const p = this.redis.pipeline();
        for (const m of minutes) p.hgetall(this.keys.counts(shard, m, filter?.dim ?? null, filter?.value ?? null));
        const res = (await p.exec()) ?? [];
        res.forEach(([err, h], i) => {
          if (err) throw err;
          const over = overrides.get(minutes[i]!);
          for (const [ad, c] of Object.entries(h as Record<string, string>)) if (!over?.has(ad)) add(ad, Number(c));
          if (over) for (const [ad, c] of over) add(ad, c);
        });
      }),
    );
    return { from: isoOf(minuteStartMs(from)), to: isoOf(minuteStartMs(to)), ads: topN(totals, n) };
  }

  /** Committed progress of every shard, from Redis (shards that never committed are absent). */
  async shardMetas(): Promise<ShardMeta[]> {
    const p = this.redis.pipeline();
    for (let s = 0; s < this.opts.shards; s++) p.hgetall(this.keys.meta(s));
    const res = (await p.exec()) ?? [];
    const out: ShardMeta[] = [];
    res.forEach(([err, h], shard) => {
      if (err) throw err;
      const m = h as Record<string, string>;
      if (m.seq === undefined) return;
      out.push({
        shard,
        seq: Number(m.seq),
        watermark: Number(m.watermark),
        closedThrough: Number(m.closedThrough),
        epoch: Number(m.epoch),
      });
    });
    return out;
  }

  /** Live status of one shard from its owner, or null when no owner answers. */
  async shardStatus(shard: number): Promise<ShardStatusReply | null> {
    try {
      return await this.ask<ShardStatusReply>(shard, { op: 'status' }, 1);
    } catch {
      return null;
    }
  }

  private ask<T>(shard: number, req: ShardRequest, attempts?: number): Promise<T> {
    return this.client.ask<T>(shard, req, attempts);
  }
}

function defaultEnd(metas: readonly ShardMeta[]): number {
  const closed = metas.filter((m) => m.closedThrough >= 0).map((m) => m.closedThrough);
  if (closed.length === 0) return Math.floor(Date.now() / MINUTE_MS);
  return Math.min(...closed) + 1;
}

function toMap(flat: Array<string | number>): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i + 1 < flat.length; i += 2) m.set(flat[i] as string, flat[i + 1] as number);
  return m;
}
