import type { BatchResult, ShardActor, ShardActorConfig, ShardActorPorts } from '../actors/shard-actor.ts';
import type { RankingUpdate } from '../actors/shard/rankings.ts';
import { AdaggError, ErrorCode } from '../errors.ts';
import { decodeBatch } from '../model/batch-codec.ts';
import type { Click } from '../model/click.ts';
import { decodeControl, isControlMessage } from '../model/hot-messages.ts';
import type { Clock } from './clock.ts';
import type { RuntimeEvents } from './events.ts';
import type { Logger } from './logger.ts';
import { Mailbox } from './mailbox.ts';
import type { DeadLetterPublisher } from './producer.ts';
import type { ShardFeed, StreamMessage } from './shard-feed.ts';
import type { CountWrite, ShardCommit, ShardStore, StateReader, UnitId } from './shard-store.ts';

export interface ShardHostOptions {
  actor: ShardActorConfig;
  /** The owner epoch assigned by placement; unset: take a new one from the store (static mode). */
  epoch?: number;
  mailboxCapacity: number;
  tickIntervalMs: number;
  snapshotIntervalMs: number;
  snapshotEveryMessages: number;
}

/** Builds a shard actor, fresh or from its committed state: injected so the runtime never imports actor code. */
export interface ShardActorFactory {
  create(config: ShardActorConfig, ports: ShardActorPorts): ShardActor;
  /** Restores from a committed head, reading the parts it names through `reader`. */
  restore(head: Uint8Array, reader: StateReader, config: ShardActorConfig, ports: ShardActorPorts): Promise<ShardActor>;
}

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
  restored(actor: ShardActor): Promise<void>;
  /** Applies a control message; `commitNow` asks for a commit at once (a child's end). */
  control(actor: ShardActor, seq: number, data: Uint8Array): Promise<{ commitNow: boolean }>;
  /** After a click batch: republish `res.forward` and feed the detector. */
  afterBatch(actor: ShardActor, seq: number, clicks: readonly Click[], res: BatchResult): Promise<void>;
  /** Before a commit is written (a child publishes its report of the state being committed). */
  beforeCommit(actor: ShardActor, c: ShardCommit): Promise<void>;
  /** Each tick, caught up or not; returns true to force a commit (a child's closedThrough moved). */
  tick(actor: ShardActor, pending: number): Promise<boolean>;
}

export interface ShardHostDeps {
  actors: ShardActorFactory;
  store: ShardStore;
  /** Publishes ranking updates (fire and forget: a reducer that misses one resyncs by request). */
  publishRankings: (shard: UnitId, updates: RankingUpdate[]) => void;
  feed: () => ShardFeed;
  deadLetters: DeadLetterPublisher;
  clock: Clock;
  events: RuntimeEvents;
  log: Logger;
  /** Hot-ad splitting (parent or child side); absent: control messages are applied without side effects. */
  hot?: ShardHostHotHooks;
}

/** Messages of a shard actor's mailbox. Queries go through it too, so they see a consistent state. */
export type ShardMsg =
  | { k: 'batch'; m: StreamMessage }
  | { k: 'tick' }
  /** Closed minutes read back for the live rankings after a restore (or the error reading them). */
  | { k: 'warm'; minutes: number[]; decode?: () => CountWrite[]; err?: unknown }
  | { k: 'call'; fn: (a: ShardActor) => unknown; done: (v: unknown, err?: unknown) => void }
  | { k: 'stop' };

/**
 * One incarnation loop of a shard actor: take ownership (new epoch), restore from the snapshot,
 * read the stream from the stored sequence + 1, apply one message at a time, commit
 * counts + snapshot + sequence atomically on the configured cadence. Run under a Supervisor,
 * which restarts it from the last snapshot when it throws.
 */
export class ShardHost {
  private mailbox: Mailbox<ShardMsg> | undefined;
  private actor: ShardActor | undefined;
  private pending = -1;
  epoch = 0;
  constructor(
    readonly shard: UnitId,
    private readonly opts: ShardHostOptions,
    private readonly deps: ShardHostDeps,
  ) {}

  /** Runs until `signal` aborts (then drains and commits) or something fails (then throws). */
  async run(signal: AbortSignal): Promise<void> {
    const { store, clock, log } = this.deps;
    const epoch = this.opts.epoch ?? (await store.acquire(this.shard));
    this.epoch = epoch;
    const t0 = clock.now();
    const stored = await store.load(this.shard);
    const ports = {
      clock,
      readClosed: (r: Parameters<ShardStore['readCounts']>[1]) => store.readCounts(this.shard, r),
      ...this.deps.hot?.ports?.(),
    };
    const actor = stored
      ? await this.deps.actors.restore(stored.head, store.reader(this.shard), this.opts.actor, ports)
      : this.deps.actors.create(this.opts.actor, ports);
    const tState = clock.now();
    // The live rankings' closed minutes (the longest live window, not the stream) are read back
    // once this thread's shards have caught up, a few minutes at a time (see the tick).
    if (stored) actor.beginRankingWarmUp();
    let warmInFlight = false;
    let warmMinutes = 0;
    const hot = this.deps.hot;
    // Behind until its first tick finds it caught up: other shards' warm-ups wait for this one.
    behindHosts.add(this);
    try {
      await hot?.restored(actor);
    } catch (err) {
      behindHosts.delete(this);
      throw err;
    }
    let committedSeq = stored ? actor.lastSeq : 0;
    let lastProvisionalAt = 0;
    let lastBatchAt = clock.now();
    let lastPendingCheckAt = 0;
    let lastCommitAt = clock.now();
    let sinceCommit = 0;
    /** The largest backlog seen since the last commit: catching up from one is committed at once. */
    let backlogSinceCommit = 0;
    const mailbox = new Mailbox<ShardMsg>(this.opts.mailboxCapacity);
    this.mailbox = mailbox;
    this.actor = actor;
    this.pending = -1;
    log.info(
      { shard: this.shard, epoch, fromSeq: actor.lastSeq + 1, stateMs: tState - t0, ...actor.restoreStats, trackedIds: actor.status().trackedIds },
      'shard actor restored',
    );

    let feedError: unknown;
    const feed = this.deps.feed();
    const onAbort = (): void => mailbox.force({ k: 'stop' });
    signal.addEventListener('abort', onAbort);
    let live = true;
    const warmUpDue = (): boolean =>
      !warmInFlight &&
      actor.rankingsWarming &&
      ((this.pending === 0 && mailbox.size === 0 && behindHosts.size === 0) || clock.now() - tState >= WARM_DEFER_MAX_MS);
    /** Reads the next few closed minutes for the rankings; call only with nothing uncommitted. */
    const warmUpNext = (): void => {
      const minutes = actor.rankingWarmUpNext(WARM_CHUNK_MINUTES);
      if (minutes.length === 0) return;
      warmInFlight = true;
      void store.closedMinutes(this.shard, minutes).then(
        (decode) => live && mailbox.force({ k: 'warm', minutes, decode }),
        (err: unknown) => live && mailbox.force({ k: 'warm', minutes, err }),
      );
    };
    let tickQueued = false;
    let tickTimer: ReturnType<Clock['setTimeout']> | undefined;
    const armTick = (): void => {
      tickTimer = clock.setTimeout(() => {
        if (!live) return;
        // Always deliver the tick (it drives time-based commits, also under a backlog), but never
        // more than one queued at a time.
        if (!tickQueued) {
          tickQueued = true;
          mailbox.force({ k: 'tick' });
        }
        armTick();
      }, this.opts.tickIntervalMs);
    };
    armTick();

    const commit = async (force = false): Promise<void> => {
      const c = actor.prepareCommit(committedSeq, force);
      if (!c) return;
      const t0 = clock.now();
      await hot?.beforeCommit(actor, c);
      const bytes = await store.commit(this.shard, epoch, c);
      actor.committed(c);
      committedSeq = c.seq;
      lastCommitAt = clock.now();
      sinceCommit = 0;
      backlogSinceCommit = 0;
      this.deps.events.emit('commit', {
        shard: this.shard,
        ms: lastCommitAt - t0,
        bytes,
        headBytes: c.head.byteLength,
        writes: c.writes.length,
        seq: c.seq,
      });
    };

    try {
      await feed.start(
        actor.lastSeq + 1,
        (m) => mailbox.put({ k: 'batch', m }),
        (err) => {
          feedError = err;
          if (live) mailbox.force({ k: 'stop' });
        },
      );
      this.pending = await feed.pending();
      for (;;) {
        const msg = await mailbox.take();
        if (!msg || msg.k === 'stop') break;
        switch (msg.k) {
          case 'batch': {
            lastBatchAt = clock.now();
            if (isControlMessage(msg.m.data)) {
              const out = hot
                ? await hot.control(actor, msg.m.seq, msg.m.data)
                : (await actor.applyControl(msg.m.seq, decodeControl(msg.m.data)), { commitNow: false });
              this.pending = msg.m.pending;
              sinceCommit++;
              if (out.commitNow || sinceCommit >= this.opts.snapshotEveryMessages) await commit(out.commitNow);
              break;
            }
            const clicks = decodeBatch(msg.m.data);
            const res = await actor.applyBatch(msg.m.seq, clicks);
            if (hot) await hot.afterBatch(actor, msg.m.seq, clicks, res);
            this.pending = msg.m.pending;
            if (res.tooOld.length > 0) {
              await this.deps.deadLetters.publish(
                res.tooOld.map((click, i) => ({
                  id: `dlq-${this.shard}-${msg.m.seq}-${i}`,
                  letter: {
                    reason: 'too_old' as const,
                    error: 'click is older than the correction horizon behind the shard watermark',
                    source: `shard ${this.shard} seq ${msg.m.seq}`,
                    at: clock.now(),
                    click,
                  },
                })),
              );
            }
            this.deps.events.emit('batch', {
              shard: this.shard,
              events: clicks.length,
              counted: res.counted,
              duplicates: res.duplicates,
              late: res.late,
              tooOld: res.tooOld.length,
              skipped: res.skipped,
            });
            sinceCommit++;
            if (this.pending > backlogSinceCommit) backlogSinceCommit = this.pending;
            // Caught up after a real backlog (a restart, a burst): commit now rather than at the next
            // interval, so the committed state (and a later restart) is as fresh as the stream.
            const caughtUp =
              this.pending === 0 && backlogSinceCommit >= CAUGHT_UP_COMMIT_BACKLOG && clock.now() - lastCommitAt >= CAUGHT_UP_COMMIT_MIN_MS;
            if (caughtUp) {
              const backlog = backlogSinceCommit;
              await commit();
              log.info({ shard: this.shard, seq: actor.lastSeq, backlog }, 'shard caught up');
            } else if (sinceCommit >= this.opts.snapshotEveryMessages) await commit();
            break;
          }
          case 'tick': {
            tickQueued = false;
            // Before an idle shard closes minutes by the wall clock, the server must confirm it is
            // caught up: a feed whose consumer died with its NATS server would otherwise look idle and
            // finalise minutes with clicks still unread (feed.pending() throws there → restart).
            const quiet = clock.now() - lastBatchAt >= this.opts.actor.idleTimeoutMs / 2;
            if (this.pending !== 0 || (quiet && clock.now() - lastPendingCheckAt >= this.opts.actor.idleTimeoutMs / 2)) {
              lastPendingCheckAt = clock.now();
              this.pending = await feed.pending();
            }
            // The rankings' warm-up reads a live window of closed minutes: only once every shard of
            // this thread has caught up (or after a while), so it never slows a replay; each chunk
            // right after a commit, so what it reads is all the actor has applied to those minutes.
            // Caught up means nothing left at the server and nothing delivered but not yet applied.
            if (this.pending === 0 && mailbox.size === 0) behindHosts.delete(this);
            else behindHosts.add(this);
            if (warmUpDue()) {
              await commit();
              warmUpNext();
            }
            const closed = actor.tick(this.pending === 0 && mailbox.size === 0 && lastPendingCheckAt >= lastBatchAt);
            const force = hot ? await hot.tick(actor, this.pending) : false;
            if (closed || force || clock.now() - lastCommitAt >= this.opts.snapshotIntervalMs) await commit(force);
            const provisionalDue = clock.now() - lastProvisionalAt >= 1000;
            if (provisionalDue) lastProvisionalAt = clock.now();
            const updates = actor.rankingUpdates(provisionalDue);
            if (updates.length) this.deps.publishRankings(this.shard, updates);
            const st = actor.status();
            this.deps.events.emit('progress', {
              shard: this.shard,
              lastSeq: actor.lastSeq,
              pending: this.pending,
              watermark: actor.watermark,
              closedThrough: actor.closedThrough,
              now: clock.now(),
              trackedIds: st.trackedIds,
              dedupBytes: st.dedupBytes,
            });
            break;
          }
          case 'warm': {
            if (msg.err !== undefined) throw msg.err;
            actor.rankingsLoaded(msg.decode!(), msg.minutes);
            warmMinutes += msg.minutes.length;
            warmInFlight = false;
            if (!actor.rankingsWarming) log.info({ shard: this.shard, minutes: warmMinutes, ms: clock.now() - tState }, 'shard rankings warm');
            else if (warmUpDue()) {
              await commit();
              warmUpNext();
            }
            break;
          }
          case 'call': {
            try {
              msg.done(msg.fn(actor));
            } catch (err) {
              msg.done(undefined, err);
            }
            break;
          }
        }
      }
      if (feedError) throw feedError;
      // Draining: the feed stops first so nothing new arrives, then the final snapshot.
      await feed.stop();
      await commit(true);
      log.info({ shard: this.shard, epoch, seq: actor.lastSeq }, 'shard actor drained');
    } finally {
      live = false;
      behindHosts.delete(this);
      signal.removeEventListener('abort', onAbort);
      if (tickTimer) clock.clearTimeout(tickTimer);
      this.mailbox = undefined;
      this.actor = undefined;
      mailbox.close();
      for (const m of mailbox.clear()) {
        if (m.k === 'call') m.done(undefined, unavailable(this.shard));
      }
      await feed.stop();
    }
  }

  /** Runs `fn` against the actor's state in mailbox order; rejects if no incarnation is running. */
  call<T>(fn: (a: ShardActor) => T): Promise<T> {
    const mb = this.mailbox;
    if (!mb) return Promise.reject(unavailable(this.shard));
    return new Promise<T>((resolve, reject) => {
      try {
        mb.force({ k: 'call', fn, done: (v, err) => (err ? reject(err) : resolve(v as T)) });
      } catch (err) {
        reject(unavailable(this.shard, err));
      }
    });
  }

  /**
   * Runs `fn` against the current actor at once, outside mailbox order: only for reads whose answer
   * does not depend on where the actor is in its stream (a child's `hotSeen` question).
   */
  peek<T>(fn: (a: ShardActor) => T): T {
    const a = this.actor;
    if (!a) throw unavailable(this.shard);
    return fn(a);
  }

  /** Lag as last seen (messages pending in the stream for this shard), -1 when unknown. */
  get lag(): number {
    return this.pending;
  }
}

/**
 * Reaching the stream's end after a backlog of this many messages commits at once (at most every
 * CAUGHT_UP_COMMIT_MIN_MS, so a live stream hovering around its end does not commit per message).
 */
const CAUGHT_UP_COMMIT_BACKLOG = 2;
const CAUGHT_UP_COMMIT_MIN_MS = 200;

/** The rankings' warm-up waits for the shards of its thread to catch up, but never longer than this. */
const WARM_DEFER_MAX_MS = 15_000;
/** Closed minutes read per warm-up step (newest first: short windows are back first). */
const WARM_CHUNK_MINUTES = 5;

/** Hosts of this thread (worker) last seen behind their stream: warm-ups wait until none is. */
const behindHosts = new Set<ShardHost>();

function unavailable(shard: UnitId, cause?: unknown): AdaggError {
  return new AdaggError(ErrorCode.ShardUnavailable, `shard ${shard} actor is not running here`, { cause });
}

