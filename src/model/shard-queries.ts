import type { HotSeenReply, HotSplitStatus } from './hot-report.ts';
import type { RankSpec } from './rank-spec.ts';
import type { RankingState } from './rankings.ts';
import type { FlatCounts, UnitId } from './shard-state.ts';

/**
 * Queries a shard actor answers, and their replies: asked by the gateway and by other actors over
 * NATS, carried by the runtime into the actor's mailbox, answered by the actor. A typed union keyed
 * by `type`, never a closure, so every question an actor can be asked is listed here.
 */

/** One ad's counts in [fromMinute, toMinute), optionally for one dimension value. */
export interface AdQuery {
  adId: string;
  fromMinute: number;
  toMinute: number;
  dim?: string | undefined;
  value?: string | undefined;
}

export interface AdQueryReply {
  /** Minutes held in memory (open or closed-but-unflushed), with this ad's count in each. */
  minutes: Array<[number, number]>;
  /** Unflushed corrected values of closed minutes that override the store. */
  corrections: Array<[number, number]>;
  closedThrough: number;
  /**
   * Every minute <= sealedThrough is sealed: no live path (late click, hot child report, risk
   * verdict) can change it any more, only a recompute. -1: none. Optional: older actors omit it.
   */
  sealedThrough?: number;
  watermark: number;
}

/** Every ad's counts in [fromMinute, toMinute), optionally for one dimension value. */
export interface TopQuery {
  fromMinute: number;
  toMinute: number;
  dim?: string | undefined;
  value?: string | undefined;
}

export interface TopQueryReply {
  /** Minutes summed into `counts`; the caller reads the others from the store. */
  covered: number[];
  counts: FlatCounts;
  /** Unflushed corrected values of closed minutes (per minute, flat ad/count) that override the store. */
  corrections: Array<[number, FlatCounts]>;
  closedThrough: number;
}

export interface ShardStatus {
  shard: UnitId;
  lastSeq: number;
  watermark: number;
  closedThrough: number;
  maxEventTs: number;
  openMinutes: number;
  pendingClosedMinutes: number;
  trackedIds: number;
  dedupBytes: number;
  retainedMinutes: number;
  /** Clicks held for invalid-click rules (their windows can still change: docs/risk.md); 0 without rules. */
  riskClicks: number;
  /** Every minute <= sealedThrough is sealed (-1: none); optional: older actors omit it. */
  sealedThrough?: number;
  /** Live changes refused because they reached a sealed minute (a hot child behind its parent). */
  sealedRefusals?: number;
}

/** Invalid clicks charged to one rule, by offending key value (the rule's key; ip_block: the ip). */
export interface OffendersQuery {
  rule: string;
  fromMs: number;
  toMs: number;
  limit: number;
}

export interface OffendersReply {
  offenders: Array<{ key: Record<string, string>; invalid: number }>;
  /** Clicks before this time are no longer held by the shard (the correction horizon). */
  horizonFromMs: number;
}

/** A question to a shard actor. Answered between two stream messages, so it sees a consistent state. */
export type ShardQuery =
  | ({ type: 'query.ad' } & AdQuery)
  | ({ type: 'query.top' } & TopQuery)
  | { type: 'status' }
  /** Registers (or renews) ranking specs a reducer watches; answers the shard's ranking state. */
  | { type: 'rank.specs'; specs: readonly RankSpec[]; leaseMs: number }
  | { type: 'rank.state' }
  /** The shard's split ads. */
  | { type: 'hot.status' }
  /**
   * A hot child asks its parent which ids (flat hash pairs: the keyed SipHash pair and the legacy pair per id) it counted before split
   * `gen` of `ad`; null until the parent has applied that split.
   */
  | { type: 'hot.seen'; ad: string; gen: number; hashes: readonly number[] }
  /** Top offending key values of an invalid-click rule, from the clicks the shard holds. */
  | ({ type: 'risk.offenders' } & OffendersQuery);

/** The reply to each kind of query. */
export interface ShardQueryResults {
  'query.ad': AdQueryReply;
  'query.top': TopQueryReply;
  status: ShardStatus;
  'rank.specs': RankingState;
  'rank.state': RankingState;
  'hot.status': HotSplitStatus[];
  'hot.seen': HotSeenReply | null;
  'risk.offenders': OffendersReply;
}

/** The reply to query `Q` (by default: to any query). */
export type ShardQueryResult<Q extends ShardQuery = ShardQuery> = ShardQueryResults[Q['type']];
