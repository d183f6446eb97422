import type { NatsConnection } from '@nats-io/transport-node';
import type { Redis } from 'ioredis';
import { AdaggError, ErrorCode } from '../errors.ts';
import type { OffendersReply } from '../model/shard-queries.ts';
import { shardOf } from '../model/partition.ts';
import { isoOf, MINUTE_MS, minuteStartMs } from '../model/time.ts';
import { topN, type Ranked } from '../model/top-n.ts';
import type { AdQueryReply, ShardRequest, ShardStatusReply, TopQueryReply } from '../runtime/query-protocol.ts';
import { placementOwnerLookup } from '../runtime/placement/owner-lookup.ts';
import { knownRuleNames } from '../runtime/risk-rules-publisher.ts';
import { ShardClient } from '../runtime/shard-client.ts';
import type { RedisKeys } from '../runtime/redis-keys.ts';
import type { Topology } from '../runtime/topology.ts';
import { HeavyRankings, type HeavyRankingsOptions } from './heavy-rankings.ts';
import { invalidField, mergeOffenders, type ByRule, type OffendersResult } from './risk-fields.ts';
import { adBuckets, type AdBucketsResult } from './tiered-buckets.ts';
import { isArchived, redisFloor, splitRange, type ArchivedRange, type ArchiveTier } from './tiered-reads.ts';

export interface Filter {
  dim: string;
  value: string;
}

export interface MinuteCount {
  minute: string;
  /** Valid (billable) clicks. */
  count: number;
  /** Clicks the risk rules took (not in `count`). */
  invalid: number;
  invalid_by_rule: ByRule;
  final: boolean;
  /**
   * open: after the shard's closedThrough (provisional); closed: final, but a late click, a hot
   * child's report or a verdict may still correct it (published on the corrections feed); sealed:
   * no live path can change it any more, only a recompute.
   */
  state: MinuteState;
}

/** A minute's state (docs/api.md, "Minute states"). */
export type MinuteState = 'open' | 'closed' | 'sealed';

export interface AdCountResult {
  ad_id: string;
  from: string;
  to: string;
  count: number;
  invalid: number;
  invalid_by_rule: ByRule;
  minutes: MinuteCount[];
  watermark: string | null;
  /** ISO start of the owning shard's last sealed minute; null: none sealed yet. */
  sealed_through: string | null;
}

/** `GET /v1/ads/{ad_id}/invalid`: the breakdown of an ad's invalid clicks. */
export interface AdInvalidResult {
  ad_id: string;
  from: string;
  to: string;
  count: number;
  invalid: number;
  /** invalid / (count + invalid); 0 without clicks. */
  invalid_share: number;
  invalid_by_rule: ByRule;
  minutes: MinuteCount[];
  watermark: string | null;
  /** ISO start of the owning shard's last sealed minute; null: none sealed yet. */
  sealed_through: string | null;
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

export interface QueryServiceOptions extends HeavyRankingsOptions {
  shards: number;
  queryTimeoutMs: number;
  /** Attempts of a shard request while its owner is restarting or moving. @default 4 */
  attempts?: number;
  /** The actors keep invalid clicks this long: the longest offenders window. @default 3600000 */
  correctionHorizonMs?: number | undefined;
  /** The aggregate archive (tiered-reads.ts): archived minutes are read from it. Unset: Redis only. */
  archiveTier?: ArchiveTier | undefined;
  /** ADAGG_COUNT_TTL_MS: how far back Redis keeps counts (tiered-reads.ts redisFloor). @default 30 days */
  countTtlMs?: number | undefined;
}

/** One count field of an ad over [from, to): one value per minute, and the owner's progress. */
interface Series {
  values: number[];
  closedThrough: number;
  sealedThrough: number;
  watermark: number;
}

/** The figures adCount and adInvalid share. */
type Breakdown = Pick<AdCountResult, 'count' | 'invalid' | 'invalid_by_rule' | 'minutes' | 'watermark' | 'sealed_through'>;

/** Offenders each shard is asked for: their sum across shards is cut to the requested limit. */
const OFFENDERS_PER_SHARD = 10_000;

/**
 * Minutes read from Redis per pipeline: a 7-day window is read in steps, so no call waits behind
 * thousands of others (past the Redis call timeout) and ingest gets the event loop in between.
 */
const MINUTES_PER_READ = 256;

/**
 * Answers count queries by combining the owning shard actor's in-memory minutes (asked over NATS
 * request/reply) with final minutes from Redis. The actor is asked first; every minute it does not
 * hold and that it has closed is committed in Redis by then, so nothing is counted twice or missed.
 */
export class QueryService {
  private readonly client: ShardClient;
  /** Heavy rankings: incremental, shared and cached (heavy-rankings.ts). */
  readonly heavy: HeavyRankings;
  constructor(
    nc: NatsConnection,
    private readonly redis: Redis,
    topo: Topology,
    private readonly keys: RedisKeys,
    private readonly opts: QueryServiceOptions,
  ) {
    this.client = new ShardClient(nc, topo, opts.queryTimeoutMs, opts.attempts ?? 6, placementOwnerLookup(redis, keys.prefix));
    this.heavy = new HeavyRankings(opts);
  }

  /** An ad's valid clicks per minute, with the invalid ones by rule beside them. */
  async adCount(adId: string, fromMinute: number, toMinute: number, filter?: Filter): Promise<AdCountResult> {
    const { count, invalid, invalid_by_rule, minutes, watermark, sealed_through } = await this.adBreakdown(adId, fromMinute, toMinute, filter);
    return { ad_id: adId, from: isoOf(minuteStartMs(fromMinute)), to: isoOf(minuteStartMs(toMinute)), count, invalid, invalid_by_rule, minutes, watermark, sealed_through };
  }

  /** The same figures as adCount, with the invalid share of the range. */
  async adInvalid(adId: string, fromMinute: number, toMinute: number, filter?: Filter): Promise<AdInvalidResult> {
    const { count, invalid, invalid_by_rule, minutes, watermark, sealed_through } = await this.adBreakdown(adId, fromMinute, toMinute, filter);
    const invalid_share = count + invalid > 0 ? invalid / (count + invalid) : 0;
    return { ad_id: adId, from: isoOf(minuteStartMs(fromMinute)), to: isoOf(minuteStartMs(toMinute)), count, invalid, invalid_share, invalid_by_rule, minutes, watermark, sealed_through };
  }

  /**
   * The valid count field and each rule's invalid field (risk-fields.ts), read alike and in
   * parallel. Without rule names no invalid field is read.
   */
  private async adBreakdown(adId: string, fromMinute: number, toMinute: number, filter: Filter | undefined): Promise<Breakdown> {
    const [rules, arch] = await Promise.all([this.ruleNames(), this.opts.archiveTier?.range()]);
    const [valid, ...byRule] = await Promise.all([
      this.series(adId, fromMinute, toMinute, filter, arch),
      ...rules.map((r) => this.series(adId, fromMinute, toMinute, invalidField(r, filter), arch)),
    ]);
    const sum = (xs: readonly number[]): number => xs.reduce((a, x) => a + x, 0);
    const invalid_by_rule: ByRule = {};
    rules.forEach((r, i) => (invalid_by_rule[r] = sum(byRule[i]!.values)));
    const minutes = valid!.values.map((count, i): MinuteCount => {
      const m = fromMinute + i;
      const perRule: ByRule = {};
      rules.forEach((r, k) => (perRule[r] = byRule[k]!.values[i]!));
      const invalid = byRule.reduce((a, s) => a + s.values[i]!, 0);
      return { minute: isoOf(minuteStartMs(m)), count, invalid, invalid_by_rule: perRule, final: m <= valid!.closedThrough, state: minuteState(m, valid!) };
    });
    return {
      count: sum(valid!.values),
      invalid: sum(Object.values(invalid_by_rule)),
      invalid_by_rule,
      minutes,
      watermark: valid!.watermark >= 0 ? isoOf(valid!.watermark) : null,
      sealed_through: valid!.sealedThrough >= 0 ? isoOf(minuteStartMs(valid!.sealedThrough)) : null,
    };
  }

  /**
   * An ad's counts per UTC hour or day over [fromMinute, toMinute) (aligned to the granularity):
   * the archived part from the archive's rollups, the rest from the actor and Redis (tiered-buckets.ts).
   */
  async adCountBuckets(adId: string, fromMinute: number, toMinute: number, filter: Filter | undefined, granularity: 'hour' | 'day'): Promise<AdBucketsResult> {
    return adBuckets(
      { series: (a, f, t, field, arch) => this.series(a, f, t, field, arch), archive: this.opts.archiveTier, rules: await this.ruleNames(), ttlMinutes: this.ttlMinutes() },
      adId,
      fromMinute,
      toMinute,
      filter,
      granularity,
    );
  }

  private ttlMinutes(): number {
    return Math.floor((this.opts.countTtlMs ?? 30 * 86_400_000) / MINUTE_MS);
  }

  /**
   * One count field of an ad per minute of [fromMinute, toMinute): minutes of `arch` from the
   * aggregate archive, the others from the owning actor's minutes and unflushed corrections, and
   * Redis for the closed minutes it no longer holds.
   */
  private async series(adId: string, fromMinute: number, toMinute: number, field: Filter | undefined, arch?: ArchivedRange): Promise<Series> {
    const shard = shardOf(adId, this.opts.shards);
    const { archived } = splitRange(fromMinute, toMinute, arch);
    const [reply, fromArchive] = await Promise.all([
      this.ask<AdQueryReply>(shard, {
        op: 'ad',
        adId,
        fromMinute,
        toMinute,
        dim: field?.dim,
        value: field?.value,
      }),
      this.opts.archiveTier && archived[1] > archived[0]
        ? this.opts.archiveTier.adBuckets(adId, { dim: field?.dim ?? null, value: field?.value ?? null }, archived[0], archived[1], 1)
        : Promise.resolve(new Map<number, number>()),
    ]);
    const held = new Map(reply.minutes);
    const corrected = new Map(reply.corrections);
    const fromStore: number[] = [];
    for (let m = fromMinute; m < toMinute; m++) {
      if (!isArchived(m, arch) && !held.has(m) && !corrected.has(m) && m <= reply.closedThrough) fromStore.push(m);
    }
    const stored = new Map<number, number>();
    // In steps: an hour/day query may read many minutes (the part of its range not archived).
    for (let i = 0; i < fromStore.length; i += MINUTES_PER_READ * 16) {
      const step = fromStore.slice(i, i + MINUTES_PER_READ * 16);
      const p = this.redis.pipeline();
      for (const m of step) p.hget(this.keys.counts(shard, m, field?.dim ?? null, field?.value ?? null), adId);
      const res = (await p.exec()) ?? [];
      res.forEach(([err, v], j) => {
        if (err) throw err;
        stored.set(step[j]!, Number(v ?? 0));
      });
    }
    const values: number[] = [];
    for (let m = fromMinute; m < toMinute; m++) values.push(isArchived(m, arch) ? (fromArchive.get(m) ?? 0) : (held.get(m) ?? corrected.get(m) ?? stored.get(m) ?? 0));
    // An actor of an older version does not say: no minute is called sealed.
    return { values, closedThrough: reply.closedThrough, sealedThrough: Math.min(reply.sealedThrough ?? -1, reply.closedThrough), watermark: reply.watermark };
  }

  /** Every rule name ever published (so a removed rule's history still shows), sorted; empty without rules. */
  ruleNames(): Promise<string[]> {
    return knownRuleNames(this.redis, this.keys.prefix);
  }

  /**
   * The top `limit` key values by invalid clicks charged to `rule` over the `window` minutes that
   * end with the current one, summed across shards. The actors keep invalid clicks for the
   * correction horizon only: a longer window is refused rather than answered short.
   */
  async offenders(rule: string, window: number, limit: number, nowMs = Date.now()): Promise<OffendersResult> {
    const horizonMs = this.opts.correctionHorizonMs ?? 3600_000;
    if (window * MINUTE_MS > horizonMs) {
      throw new AdaggError(ErrorCode.WindowBeyondHorizon, `window of ${window} minutes is longer than the correction horizon (ADAGG_CORRECTION_HORIZON_MS=${horizonMs})`, {
        details: { param: 'window', maxMinutes: Math.floor(horizonMs / MINUTE_MS) },
      });
    }
    if (!(await this.ruleNames()).includes(rule)) {
      throw new AdaggError(ErrorCode.UnknownRule, `no risk rule named ${JSON.stringify(rule.slice(0, 64))} was ever published`, { details: { rule: rule.slice(0, 64) } });
    }
    const to = Math.floor(nowMs / MINUTE_MS) + 1;
    const from = to - window;
    const replies = await Promise.all(
      [...Array(this.opts.shards).keys()].map((shard) =>
        this.ask<OffendersReply>(shard, { op: 'risk-offenders', rule, fromMs: minuteStartMs(from), toMs: minuteStartMs(to), limit: OFFENDERS_PER_SHARD }),
      ),
    );
    return { rule, window, from: isoOf(minuteStartMs(from)), to: isoOf(minuteStartMs(to)), offenders: mergeOffenders(replies, limit) };
  }

  /**
   * Exact top `n` over [toMinute − window, toMinute). `toMinute` defaults to the end of the latest
   * minute every shard has closed and committed.
   */
  async popular(n: number, window: number, toMinute: number | undefined, filter?: Filter): Promise<PopularResult> {
    const metas = await this.shardMetas();
    const closedEnd = defaultEnd(metas);
    const to = toMinute ?? closedEnd;
    const from = to - window;
    const answer = (ads: Ranked[]): PopularResult => ({ from: isoOf(minuteStartMs(from)), to: isoOf(minuteStartMs(to)), ads });
    const filterKey = filter ? `${filter.dim}=${filter.value}` : '';
    const heavy = await this.heavy.rank(n, window, to, filterKey, metas, closedEnd, (f, t) => this.totals(f, t, filter));
    return answer(heavy ?? topN(await this.totals(from, to, filter), n));
  }

  /**
   * Each ad's count over [from, to): archived minutes from the aggregate archive, the others from
   * the owners' open minutes and corrections, and Redis for the rest.
   */
  private async totals(from: number, to: number, filter: Filter | undefined): Promise<Map<string, number>> {
    const totals = new Map<string, number>();
    const add = (ad: string, c: number): void => void totals.set(ad, (totals.get(ad) ?? 0) + c);
    const arch = await this.opts.archiveTier?.range();
    const { archived } = splitRange(from, to, arch);
    const floor = redisFloor(from, to, arch, this.ttlMinutes());
    const fromArchive = async (): Promise<void> => {
      if (!this.opts.archiveTier || archived[1] <= archived[0]) return;
      const t = await this.opts.archiveTier.totals({ dim: filter?.dim ?? null, value: filter?.value ?? null }, archived[0], archived[1]);
      for (const [ad, c] of t) add(ad, c);
    };
    await Promise.all([
      fromArchive(),
      ...[...Array(this.opts.shards).keys()].map(async (shard) => {
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
        for (let m = floor; m < to && m <= r.closedThrough; m++) if (!covered.has(m) && !isArchived(m, arch)) minutes.push(m);
        for (let i = 0; i < minutes.length; i += MINUTES_PER_READ) {
          const step = minutes.slice(i, i + MINUTES_PER_READ);
          const p = this.redis.pipeline();
          for (const m of step) p.hgetall(this.keys.counts(shard, m, filter?.dim ?? null, filter?.value ?? null));
          const res = (await p.exec()) ?? [];
          res.forEach(([err, h], j) => {
            if (err) throw err;
            const over = overrides.get(step[j]!);
            for (const [ad, c] of Object.entries(h as Record<string, string>)) if (!over?.has(ad)) add(ad, Number(c));
            if (over) for (const [ad, c] of over) add(ad, c);
          });
        }
      }),
    ]);
    return totals;
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

/** A minute's state from its owner's progress (the shard actor decides what is sealed: windows.ts). */
export function minuteState(m: number, p: { closedThrough: number; sealedThrough: number }): MinuteState {
  if (m > p.closedThrough) return 'open';
  return m <= p.sealedThrough ? 'sealed' : 'closed';
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
