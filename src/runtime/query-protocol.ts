import { AdaggError, ErrorCode } from '../errors.ts';
import type { HotSeenReply, HotSplitStatus } from '../model/hot-report.ts';
import type { RankSpec } from '../model/rank-spec.ts';
import type { AdQuery, AdQueryReply, OffendersQuery, ShardQuery, ShardStatus, TopQuery, TopQueryReply } from '../model/shard-queries.ts';

/**
 * Request/reply messages on a shard's query subject (JSON). The gateway, the reducer host, hot
 * children and the operator CLI send these; the responder (query-responder.ts) turns each into the
 * actor's typed query (`ShardQuery`, model/shard-queries.ts) with `toShardQuery`.
 */
export type ShardRequest =
  | ({ op: 'ad' } & AdQuery)
  | ({ op: 'top' } & TopQuery)
  | { op: 'status' }
  | { op: 'rank-specs'; specs: RankSpec[]; leaseMs: number }
  | { op: 'rank-state' }
  /**
   * A hot child asks its parent which ids (flat hash pairs: the keyed SipHash pair and the legacy pair per id) it counted before split
   * `gen`: `{seen, maxTs}` (maxTs: highest event time counted before the split), null: not yet known.
   */
  | { op: 'hot-seen'; ad: string; gen: number; hashes: number[] }
  /** The shard's split ads. */
  | { op: 'hot-status' }
  /** Top offending key values of an invalid-click rule (issue 14). */
  | ({ op: 'risk-offenders' } & OffendersQuery);

export interface ShardStatusReply extends ShardStatus {
  epoch: number;
  lag: number;
  node: string;
}

export type ShardReply<T> = { ok: true; result: T } | { ok: false; code: string; error: string };

export type { AdQueryReply, HotSeenReply, HotSplitStatus, TopQueryReply };

/** The actor query a request asks; ADAGG_E_BAD_PARAM for an unknown op. */
export function toShardQuery(req: ShardRequest): ShardQuery {
  switch (req.op) {
    case 'ad':
      return { type: 'query.ad', adId: req.adId, fromMinute: req.fromMinute, toMinute: req.toMinute, dim: req.dim, value: req.value };
    case 'top':
      return { type: 'query.top', fromMinute: req.fromMinute, toMinute: req.toMinute, dim: req.dim, value: req.value };
    case 'status':
      return { type: 'status' };
    case 'rank-specs':
      return { type: 'rank.specs', specs: req.specs, leaseMs: req.leaseMs };
    case 'rank-state':
      return { type: 'rank.state' };
    case 'hot-seen':
      return { type: 'hot.seen', ad: req.ad, gen: req.gen, hashes: req.hashes };
    case 'hot-status':
      return { type: 'hot.status' };
    case 'risk-offenders':
      return { type: 'risk.offenders', rule: req.rule, fromMs: req.fromMs, toMs: req.toMs, limit: req.limit };
    default:
      throw new AdaggError(ErrorCode.BadParam, 'unknown shard query op');
  }
}
