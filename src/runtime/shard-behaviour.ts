import type { Click } from '../model/click.ts';
import type { BatchResult, ControlResult, RiskResult } from '../model/apply-results.ts';
import type { RiskMessage } from '../model/risk-messages.ts';
import type { HotControl } from '../model/hot-messages.ts';
import type { HotSeenReply, HotSplitStatus, RetiredSplit, SplitView } from '../model/hot-report.ts';
import type { RankSpec } from '../model/rank-spec.ts';
import type { RankingState, RankingUpdate } from '../model/rankings.ts';
import type { ShardActorConfig } from '../model/shard-config.ts';
import type { AdQuery, AdQueryReply, OffendersQuery, OffendersReply, ShardQuery, ShardQueryResult, ShardStatus, TopQuery, TopQueryReply } from '../model/shard-queries.ts';
import type { CountRead, CountWrite, ShardCommit, StateReader } from '../model/shard-state.ts';
import type { Clock } from './clock.ts';

/**
 * The shard actor contract: what the runtime's shard host needs from the actor it hosts. The
 * runtime defines it and never imports actor code; an actor kind implements it and the composition
 * root (CLI, tests, benchmarks) hands its factory to the runtime (runtime/actor-registry.ts).
 *
 * The host calls these one at a time, in mailbox order (shard-incarnation.ts): between two calls
 * the state is always consistent, so a query may be answered between any two messages.
 */

/** What the host provides to an actor. */
export interface ShardActorPorts {
  clock: Clock;
  /** Loads stored final values of closed-minute fields, for corrections by late clicks. */
  readClosed(reads: readonly CountRead[]): Promise<number[]>;
  /**
   * Hot child only: for each id (flat hash pairs: the keyed SipHash pair and the legacy pair, and the click's event
   * time), whether the parent counted it before the split. Resolves only once the parent has
   * applied the split.
   */
  seenByParent?(hashes: readonly number[], ts: readonly number[]): Promise<boolean[]>;
}

/** How the last restore spent its time (reading parts, rebuilding open minutes, the dedupe table). */
export interface RestoreStats {
  readMs: number;
  openMs: number;
  dedupMs: number;
}

/** Stream position and time of an actor (read-only to everyone but the actor). */
export interface ShardProgress {
  readonly lastSeq: number;
  readonly watermark: number;
  /** Every minute <= closedThrough is closed (final). */
  readonly closedThrough: number;
  readonly maxEventTs: number;
}

/** The questions of `ShardQuery`, one method each (also used directly by query jobs' private actors). */
export interface ShardQueries {
  queryAd(q: AdQuery): AdQueryReply;
  queryTop(q: TopQuery): TopQueryReply;
  status(): ShardStatus;
  /** Registers or renews ranking specs until now + leaseMs; false for a spec out of range. */
  addRankSpecs(specs: readonly RankSpec[], leaseMs: number): boolean[];
  rankingState(): RankingState;
  hotStatus(): HotSplitStatus[];
  /**
   * A child's question: which of these ids (flat hash pairs) this parent counted before split `gen`
   * of `ad`. Null until this actor has applied that split; the answer never changes afterwards.
   */
  hotSeen(ad: string, gen: number, hashes: readonly number[]): HotSeenReply | null;
  /** Top offending key values of an invalid-click rule (no rules: none). */
  riskOffenders(q: OffendersQuery): OffendersReply;
}

/**
 * Live rankings after a restart: the closed minutes of the longest live window are read back while
 * the actor consumes, a few at a time. `rankingWarmUpNext` names the next ones (and must be called
 * with nothing uncommitted, right after a commit), `rankingsLoaded` hands them in.
 */
export interface ShardRankingWarmUp {
  beginRankingWarmUp(): void;
  /** Whether closed minutes are still to be read back for the live rankings. */
  readonly rankingsWarming: boolean;
  rankingWarmUpNext(max: number): number[];
  rankingsLoaded(stored: readonly CountWrite[], minutes: readonly number[]): void;
}

/** Hot-ad splitting as the runtime's hooks see it (runtime/hot/*): read-only views and acknowledgements. */
export interface HotShardView {
  /** The parent's split ads (copies: the hooks never touch the actor's records). */
  splits(): SplitView[];
  /** Splits that ended and whose routes and units are still to be removed. */
  retired(): RetiredSplit[];
  /** The host removed a retired split's routes and units. */
  dropRetired(ad: string, gen: number): void;
  /** Hot child: its end marker was applied; every later click goes back to the parent. */
  readonly childEnded: boolean;
  /** Hot child: the absolute counts of its open minutes, as count writes (for its reports). */
  openWrites(): CountWrite[];
  /** Hot child: its dedupe table image (ClickDedup.toBytes), sent with its final report. */
  dedupBytes(): Uint8Array;
}

export interface ShardBehaviour extends ShardProgress, ShardQueries, ShardRankingWarmUp, HotShardView {
  readonly restoreStats: RestoreStats | undefined;
  /** Applies one stream message of clicks. Messages at or below the last applied sequence are skipped. */
  applyBatch(seq: number, clicks: readonly Click[]): Promise<BatchResult>;
  /** Applies a hot-split control message (split, unsplit, a child's report, an end marker) at `seq`. */
  applyControl(seq: number, msg: HotControl): Promise<ControlResult>;
  /** Applies a risk message (rules, presence report, spread verdict) at `seq` (docs/risk.md). */
  applyRisk(seq: number, msg: RiskMessage): Promise<RiskResult>;
  /** Periodic wall-clock tick (idle watermark advance, dedupe expiry); true when minutes were closed. */
  tick(caughtUp: boolean): boolean;
  /**
   * What must be persisted now, or null when nothing changed since `committedSeq` (unless `force`).
   * Nothing is forgotten until `committed()`.
   */
  prepareCommit(committedSeq: number, force?: boolean): ShardCommit | null;
  /** The last prepared commit was written (with nothing applied in between). */
  committed(c: ShardCommit): void;
  /** Ranking updates to publish now (final lists on minute close, provisional deltas if due). */
  rankingUpdates(withProvisional: boolean): RankingUpdate[];
}

/** Builds a shard actor, fresh or from its committed state: injected so the runtime never imports actor code. */
export interface ShardBehaviourFactory {
  create(config: ShardActorConfig, ports: ShardActorPorts): ShardBehaviour;
  /** Restores from a committed head, reading the parts it names through `reader`. */
  restore(head: Uint8Array, reader: StateReader, config: ShardActorConfig, ports: ShardActorPorts): Promise<ShardBehaviour>;
}

/** Answers a query from the actor's state: the one place that maps the query union onto the contract. */
export function answerQuery<Q extends ShardQuery>(b: ShardBehaviour, q: Q): ShardQueryResult<Q> {
  return answer(b, q) as ShardQueryResult<Q>;
}

function answer(b: ShardBehaviour, q: ShardQuery): ShardQueryResult {
  switch (q.type) {
    case 'query.ad':
      return b.queryAd(q);
    case 'query.top':
      return b.queryTop(q);
    case 'status':
      return b.status();
    case 'rank.specs':
      b.addRankSpecs(q.specs, q.leaseMs);
      return b.rankingState();
    case 'rank.state':
      return b.rankingState();
    case 'hot.status':
      return b.hotStatus();
    case 'hot.seen':
      return b.hotSeen(q.ad, q.gen, q.hashes);
    case 'risk.offenders':
      return b.riskOffenders(q);
  }
}
