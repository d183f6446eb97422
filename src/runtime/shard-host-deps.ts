import type { BatchResult } from '../model/apply-results.ts';
import type { Click } from '../model/click.ts';
import type { RiskOut } from '../model/risk-messages.ts';
import type { RankingUpdate } from '../model/rankings.ts';
import type { ShardActorConfig } from '../model/shard-config.ts';
import type { ShardCommit, UnitId } from '../model/shard-state.ts';
import type { Clock } from './clock.ts';
import type { CorrectionRecord } from './corrections-outbox.ts';
import type { RuntimeEvents } from './events.ts';
import type { Logger } from './logger.ts';
import type { DeadLetterPublisher } from './producer.ts';
import type { ShardActorPorts, ShardBehaviour, ShardBehaviourFactory } from './shard-behaviour.ts';
import type { ShardFeed } from './shard-feed.ts';
import type { ShardStore } from './shard-store.ts';

/**
 * What a shard host is configured with and runs against (shard-host.ts, shard-incarnation.ts): its
 * options, its ports (store, feed, dead letters, clock) and the hot-split hooks. Ports are narrow
 * interfaces, so unit tests drive a host with an in-memory store and a fake feed.
 */

export interface ShardHostOptions {
  actor: ShardActorConfig;
  /** The owner epoch assigned by placement; unset: take a new one from the store (static mode). */
  epoch?: number;
  /** Stream messages queued per actor (the feed waits while full). */
  mailboxCapacity: number;
  /**
   * Queries queued per actor, answered before the next stream message; one more is refused with
   * ADAGG_E_MAILBOX_FULL. @default mailboxCapacity
   */
  queryCapacity?: number;
  tickIntervalMs: number;
  snapshotIntervalMs: number;
  snapshotEveryMessages: number;
}

/** The part of a ShardFeed (JetStream ordered consumer) a host uses. */
export type ShardFeedPort = Pick<ShardFeed, 'start' | 'pending' | 'stop'>;

/**
 * Hot-ad splitting around the incarnation loop (runtime/hot/*): a parent shard republishes split
 * ads' clicks and keeps routes and child units in line with its state; a child reports its counts.
 * Every hook runs inside the loop, awaited, so a commit never passes a message whose side effects
 * are not done (a crash replays them with the same message ids).
 */
export interface ShardHostHotHooks {
  /** Extra actor ports (a child's question to its parent). */
  ports?(): Partial<ShardActorPorts>;
  /** After restore: redo the side effects of the restored state (idempotent). */
  restored(actor: ShardBehaviour): Promise<void>;
  /** Applies a control message; `commitNow` asks for a commit at once (a child's end). */
  control(actor: ShardBehaviour, seq: number, data: Uint8Array): Promise<{ commitNow: boolean }>;
  /** After a click batch: republish `res.forward` and feed the detector. */
  afterBatch(actor: ShardBehaviour, seq: number, clicks: readonly Click[], res: BatchResult): Promise<void>;
  /** Before a commit is written (a child publishes its report of the state being committed). */
  beforeCommit(actor: ShardBehaviour, c: ShardCommit): Promise<void>;
  /** Each tick, caught up or not; returns true to force a commit (a child's closedThrough moved). */
  tick(actor: ShardBehaviour, pending: number): Promise<boolean>;
}

/** The corrections feed (corrections-outbox.ts): published before the commit that makes them. */
export interface CorrectionsPort {
  /** The commit sequence of the last record published for `unit` (0: none). */
  lastPublishedSeq(unit: UnitId): Promise<number>;
  publish(records: readonly CorrectionRecord[]): Promise<void>;
}

export interface ShardHostDeps {
  actors: ShardBehaviourFactory;
  store: ShardStore;
  /** Publishes ranking updates (fire and forget: a reducer that misses one resyncs by request). */
  publishRankings: (shard: UnitId, updates: RankingUpdate[]) => void;
  feed: () => ShardFeedPort;
  deadLetters: Pick<DeadLetterPublisher, 'publish'>;
  clock: Clock;
  events: RuntimeEvents;
  log: Logger;
  /** Publishes an actor's risk messages before the commit that covers them (absent: none are expected). */
  publishRisk?: (out: readonly RiskOut[]) => Promise<void>;
  /** Publishes corrections of closed minutes before the commit that makes them (absent: none are published, e.g. hot children). */
  corrections?: CorrectionsPort;
  /** Hot-ad splitting (parent or child side); absent: control messages are applied without side effects. */
  hot?: ShardHostHotHooks;
}
