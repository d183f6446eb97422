import { AdaggError, ErrorCode } from '../errors.ts';
import { decodeBatch } from '../model/batch-codec.ts';
import { decodeControl, isControlMessage } from '../model/hot-messages.ts';
import { decodeRiskMessage, isRiskMessage } from '../model/risk-messages.ts';
import { tooOldLetters } from './dead-letter.ts';
import type { ShardCommit, UnitId } from '../model/shard-state.ts';
import { AckedClicks } from './acked-clicks.ts';
import { correctionRecords } from './corrections-outbox.ts';
import type { TimerHandle } from './clock.ts';
import { Mailbox } from './mailbox.ts';
import { answerQuery, type ShardBehaviour } from './shard-behaviour.ts';
import type { StreamMessage } from './shard-feed.ts';
import type { ShardFeedPort, ShardHostDeps, ShardHostOptions } from './shard-host-deps.ts';
import type { QueryReply, ShardMsg } from './shard-mailbox-msg.ts';
import type { ShardQuery, ShardQueryResult } from '../model/shard-queries.ts';

/**
 * One incarnation of a shard actor: restored from its committed state under one owner epoch, it
 * reads the stream from the committed sequence + 1, handles one message at a time and commits
 * counts + state + sequence atomically on the configured cadence (every `snapshotIntervalMs`,
 * every `snapshotEveryMessages`, at once when minutes close or it caught up after a backlog), and
 * commits a last time when drained. A failure ends it (the supervisor restores a new one).
 */
export class Incarnation {
  /** Messages pending in the stream as last seen, -1 until known. */
  private pending = -1;
  private readonly mailbox: Mailbox<ShardMsg>;
  private readonly feed: ShardFeedPort;
  private committedSeq: number;
  private lastProvisionalAt = 0;
  private lastBatchAt = 0;
  private lastPendingCheckAt = 0;
  private lastCommitAt = 0;
  private sinceCommit = 0;
  /** The largest backlog seen since the last commit: catching up from one is committed at once. */
  private backlogSinceCommit = 0;
  /** Acknowledgement times of the clicks counted since the last commit. */
  private readonly acked = new AckedClicks();
  private warmInFlight = false;
  private warmMinutes = 0;
  private tickQueued = false;
  private tickTimer: TimerHandle | undefined;
  private live = true;
  private feedError: unknown;
  /**
   * The last commit sequence a previous incarnation published corrections for: commits starting
   * before it publish every field they touch, even unchanged (corrections-outbox.ts).
   */
  private correctionsReplayUntil = 0;

  private constructor(
    readonly unit: UnitId,
    readonly epoch: number,
    private readonly actor: ShardBehaviour,
    restored: boolean,
    /** When the state was rebuilt: the warm-up defers to catching up at most WARM_DEFER_MAX_MS after it. */
    private readonly stateAt: number,
    private readonly opts: ShardHostOptions,
    private readonly deps: ShardHostDeps,
  ) {
    this.committedSeq = restored ? actor.lastSeq : 0;
    this.mailbox = new Mailbox<ShardMsg>(opts.mailboxCapacity, opts.queryCapacity ?? opts.mailboxCapacity);
    this.feed = deps.feed();
  }

  /** Restores the actor from the store (or creates it) and redoes the hot-split side effects of its state. */
  static async open(unit: UnitId, epoch: number, opts: ShardHostOptions, deps: ShardHostDeps): Promise<Incarnation> {
    const { store, clock, log } = deps;
    const t0 = clock.now();
    const stored = await store.load(unit);
    const ports = { clock, readClosed: (r: Parameters<typeof store.readCounts>[1]) => store.readCounts(unit, r), ...deps.hot?.ports?.() };
    const actor = stored ? await deps.actors.restore(stored.head, store.reader(unit), opts.actor, ports) : deps.actors.create(opts.actor, ports);
    const tState = clock.now();
    // The live rankings' closed minutes (the longest live window, not the stream) are read back
    // once this thread's shards have caught up, a few minutes at a time (see onTick).
    if (stored) actor.beginRankingWarmUp();
    const inc = new Incarnation(unit, epoch, actor, stored !== null, tState, opts, deps);
    if (deps.corrections) inc.correctionsReplayUntil = await deps.corrections.lastPublishedSeq(unit);
    // Behind until its first tick finds it caught up: other shards' warm-ups wait for this one.
    behindHosts.add(inc);
    try {
      await deps.hot?.restored(actor);
    } catch (err) {
      behindHosts.delete(inc);
      throw err;
    }
    log.info(
      { shard: unit, epoch, fromSeq: actor.lastSeq + 1, stateMs: tState - t0, ...actor.restoreStats, trackedIds: actor.status().trackedIds },
      'shard actor restored',
    );
    return inc;
  }

  /** Runs until `signal` aborts (then drains and commits) or something fails (then throws). */
  async run(signal: AbortSignal): Promise<void> {
    const onAbort = (): void => this.mailbox.force({ type: 'stop' });
    signal.addEventListener('abort', onAbort);
    this.lastBatchAt = this.lastCommitAt = this.deps.clock.now();
    this.armTick();
    try {
      await this.feed.start(
        this.actor.lastSeq + 1,
        (m) => this.mailbox.put({ type: 'batch', m }),
        (err) => {
          this.feedError = err;
          if (this.live) this.mailbox.force({ type: 'stop' });
        },
      );
      this.pending = await this.feed.pending();
      for (;;) {
        const msg = await this.mailbox.take();
        if (!msg || msg.type === 'stop') break;
        await this.handle(msg);
      }
      if (this.feedError) throw this.feedError;
      await this.drain();
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.dispose();
      await this.feed.stop();
    }
  }

  /** Messages pending in the stream as last seen, -1 until known. */
  get lag(): number {
    return this.pending;
  }

  /** Queues a query in the priority lane; rejects with ADAGG_E_MAILBOX_FULL when that lane is full. */
  ask<Q extends ShardQuery>(query: Q): Promise<ShardQueryResult<Q>> {
    return new Promise<ShardQueryResult<Q>>((resolve, reject) => {
      const reply: QueryReply = { resolve: (r) => resolve(r as ShardQueryResult<Q>), reject };
      try {
        this.mailbox.offerPriority({ type: 'query', query, reply });
      } catch (err) {
        reject(err instanceof AdaggError && err.code === ErrorCode.MailboxFull ? err : unavailable(this.unit, err));
      }
    });
  }

  private async handle(msg: Exclude<ShardMsg, { type: 'stop' }>): Promise<void> {
    switch (msg.type) {
      case 'batch':
        if (isRiskMessage(msg.m.data)) return this.onRisk(msg.m);
        return isControlMessage(msg.m.data) ? this.onControl(msg.m) : this.onBatch(msg.m);
      case 'tick':
        return this.onTick();
      case 'warm':
        return this.onWarm(msg);
      case 'query':
        return this.onQuery(msg);
    }
  }

  private async onControl(m: StreamMessage): Promise<void> {
    this.lastBatchAt = this.deps.clock.now();
    const hot = this.deps.hot;
    const out = hot
      ? await hot.control(this.actor, m.seq, m.data)
      : (await this.actor.applyControl(m.seq, decodeControl(m.data)), { commitNow: false });
    this.pending = m.pending;
    this.sinceCommit++;
    if (out.commitNow || this.sinceCommit >= this.opts.snapshotEveryMessages) await this.commit(out.commitNow);
  }

  /** A risk message (rules, a presence report, a spread verdict: docs/risk.md), applied at its sequence. */
  private async onRisk(m: StreamMessage): Promise<void> {
    this.lastBatchAt = this.deps.clock.now();
    const closedBefore = this.actor.closedThrough;
    const res = await this.actor.applyRisk(m.seq, decodeRiskMessage(m.data));
    this.pending = m.pending;
    if (res.risk) this.deps.events.emit('risk', { shard: this.unit, ...res.risk });
    this.noteClosed(closedBefore);
    this.sinceCommit++;
    if (this.sinceCommit >= this.opts.snapshotEveryMessages) await this.commit();
  }

  private async onBatch(m: StreamMessage): Promise<void> {
    const { clock, events, log } = this.deps;
    this.lastBatchAt = clock.now();
    const clicks = decodeBatch(m.data);
    const closedBefore = this.actor.closedThrough;
    const res = await this.actor.applyBatch(m.seq, clicks);
    await this.deps.hot?.afterBatch(this.actor, m.seq, clicks, res);
    this.pending = m.pending;
    if (res.tooOld.length > 0) await this.deps.deadLetters.publish(tooOldLetters(this.unit, m.seq, res.tooOld, clock.now()));
    events.emit('batch', {
      shard: this.unit,
      events: clicks.length,
      counted: res.counted,
      duplicates: res.duplicates,
      late: res.late,
      tooOld: res.tooOld.length,
      skipped: res.skipped,
      ackedAt: m.ackedAt ?? -1,
      at: clock.now(),
    });
    if (!res.skipped && m.ackedAt !== undefined && res.counted > 0) this.acked.add(m.ackedAt, res.counted);
    if (res.risk) events.emit('risk', { shard: this.unit, ...res.risk });
    this.noteClosed(closedBefore);
    this.sinceCommit++;
    if (this.pending > this.backlogSinceCommit) this.backlogSinceCommit = this.pending;
    // Caught up after a real backlog (a restart, a burst): commit now rather than at the next
    // interval, so the committed state (and a later restart) is as fresh as the stream.
    const caughtUp =
      this.pending === 0 && this.backlogSinceCommit >= CAUGHT_UP_COMMIT_BACKLOG && clock.now() - this.lastCommitAt >= CAUGHT_UP_COMMIT_MIN_MS;
    if (caughtUp) {
      const backlog = this.backlogSinceCommit;
      await this.commit();
      log.info({ shard: this.unit, seq: this.actor.lastSeq, backlog }, 'shard caught up');
    } else if (this.sinceCommit >= this.opts.snapshotEveryMessages) await this.commit();
  }

  private async onTick(): Promise<void> {
    const { clock, events, hot } = this.deps;
    const idleMs = this.opts.actor.idleTimeoutMs;
    this.tickQueued = false;
    // Before an idle shard closes minutes by the wall clock, the server must confirm it is caught
    // up: a feed whose consumer died with its NATS server would otherwise look idle and finalise
    // minutes with clicks still unread (feed.pending() throws there → restart).
    const quiet = clock.now() - this.lastBatchAt >= idleMs / 2;
    if (this.pending !== 0 || (quiet && clock.now() - this.lastPendingCheckAt >= idleMs / 2)) {
      this.lastPendingCheckAt = clock.now();
      this.pending = await this.feed.pending();
    }
    // The rankings' warm-up reads a live window of closed minutes: only once every shard of this
    // thread has caught up (or after a while), so it never slows a replay; each chunk right after a
    // commit, so what it reads is all the actor has applied to those minutes. Caught up means
    // nothing left at the server and nothing delivered but not yet applied.
    if (this.pending === 0 && this.mailbox.size === 0) behindHosts.delete(this);
    else behindHosts.add(this);
    await this.warmUpIfDue();
    const closedBefore = this.actor.closedThrough;
    const closed = this.actor.tick(this.pending === 0 && this.mailbox.size === 0 && this.lastPendingCheckAt >= this.lastBatchAt);
    this.noteClosed(closedBefore);
    const force = hot ? await hot.tick(this.actor, this.pending) : false;
    if (closed || force || clock.now() - this.lastCommitAt >= this.opts.snapshotIntervalMs) await this.commit(force);
    const provisionalDue = clock.now() - this.lastProvisionalAt >= 1000;
    if (provisionalDue) this.lastProvisionalAt = clock.now();
    const updates = this.actor.rankingUpdates(provisionalDue);
    if (updates.length) this.deps.publishRankings(this.unit, updates);
    const st = this.actor.status();
    events.emit('progress', {
      shard: this.unit,
      lastSeq: this.actor.lastSeq,
      pending: this.pending,
      watermark: this.actor.watermark,
      closedThrough: this.actor.closedThrough,
      now: clock.now(),
      trackedIds: st.trackedIds,
      dedupBytes: st.dedupBytes,
      riskClicks: st.riskClicks,
    });
  }

  private async onWarm(msg: Extract<ShardMsg, { type: 'warm' }>): Promise<void> {
    if (msg.err !== undefined) throw msg.err;
    this.actor.rankingsLoaded(msg.decode!(), msg.minutes);
    this.warmMinutes += msg.minutes.length;
    this.warmInFlight = false;
    if (!this.actor.rankingsWarming) {
      this.deps.log.info({ shard: this.unit, minutes: this.warmMinutes, ms: this.deps.clock.now() - this.stateAt }, 'shard rankings warm');
    } else await this.warmUpIfDue();
  }

  /** Answers from the state between two messages; a failing query fails only its asker. */
  private onQuery(msg: Extract<ShardMsg, { type: 'query' }>): void {
    try {
      msg.reply.resolve(answerQuery(this.actor, msg.query));
    } catch (err) {
      msg.reply.reject(err);
    }
  }

  /**
   * Reads the next few closed minutes for the rankings when due: right after a commit (nothing
   * uncommitted, so the read holds all the actor applied to them), once this thread's shards have
   * caught up or the warm-up waited long enough.
   */
  private async warmUpIfDue(): Promise<void> {
    const due =
      !this.warmInFlight &&
      this.actor.rankingsWarming &&
      ((this.pending === 0 && this.mailbox.size === 0 && behindHosts.size === 0) || this.deps.clock.now() - this.stateAt >= WARM_DEFER_MAX_MS);
    if (!due) return;
    await this.commit();
    const minutes = this.actor.rankingWarmUpNext(WARM_CHUNK_MINUTES);
    if (minutes.length === 0) return;
    this.warmInFlight = true;
    void this.deps.store.closedMinutes(this.unit, minutes).then(
      (decode) => this.live && this.mailbox.force({ type: 'warm', minutes, decode }),
      (err: unknown) => this.live && this.mailbox.force({ type: 'warm', minutes, err }),
    );
  }

  private armTick(): void {
    this.tickTimer = this.deps.clock.setTimeout(() => {
      if (!this.live) return;
      // Always deliver the tick (it drives time-based commits, also under a backlog), but never
      // more than one queued at a time.
      if (!this.tickQueued) {
        this.tickQueued = true;
        this.mailbox.force({ type: 'tick' });
      }
      this.armTick();
    }, this.opts.tickIntervalMs);
  }

  /** Writes what changed since the last commit (or, `force`d, at least the head) in one fenced step. */
  private async commit(force = false): Promise<void> {
    const { store, clock, hot, events } = this.deps;
    const c = this.actor.prepareCommit(this.committedSeq, force);
    if (!c) return;
    const t0 = clock.now();
    let bytes: number;
    try {
      await hot?.beforeCommit(this.actor, c);
      // Risk messages go out before the state that produced them is committed: a crash in between
      // replays the same messages (same ids, absolute values), never loses one.
      if (c.outbox && c.outbox.length > 0) {
        if (!this.deps.publishRisk) throw new Error(`shard ${this.unit}: risk messages to publish but no publisher`);
        await this.deps.publishRisk(c.outbox);
      }
      if (c.corrections && c.corrections.length > 0 && this.deps.corrections) await this.publishCorrections(c);
      bytes = await store.commit(this.unit, this.epoch, c);
    } catch (err) {
      events.emit('commitFailed', { shard: this.unit, code: (err as AdaggError | undefined)?.code ?? 'unknown' });
      throw err;
    }
    this.actor.committed(c);
    const acked = this.acked.take();
    this.committedSeq = c.seq;
    this.lastCommitAt = clock.now();
    this.sinceCommit = 0;
    this.backlogSinceCommit = 0;
    events.emit('commit', { shard: this.unit, ms: this.lastCommitAt - t0, bytes, headBytes: c.head.byteLength, writes: c.writes.length, seq: c.seq, acked, at: this.lastCommitAt });
  }

  /**
   * Corrections of closed minutes go out before the commit that makes them, like risk messages:
   * a crash in between replays them (absolute values; a follower keeps the latest per field).
   */
  private async publishCorrections(c: ShardCommit): Promise<void> {
    const all = this.committedSeq < this.correctionsReplayUntil;
    const records = correctionRecords(this.unit, c.seq, c.corrections!, this.deps.clock.now(), all);
    if (records.length === 0) return;
    await this.deps.corrections!.publish(records);
    const byCause: Record<string, number> = {};
    for (const r of records) byCause[r.cause] = (byCause[r.cause] ?? 0) + 1;
    this.deps.events.emit('corrections', { shard: this.unit, seq: c.seq, byCause });
  }

  /** Reports minutes the last step closed (the newest one's close delay is what the metric shows). */
  private noteClosed(before: number): void {
    const now = this.actor.closedThrough;
    if (now > before) this.deps.events.emit('minuteClosed', { shard: this.unit, closedThrough: now, at: this.deps.clock.now() });
  }

  /** Draining: the feed stops first so nothing new arrives, then the final commit. */
  private async drain(): Promise<void> {
    await this.feed.stop();
    await this.commit(true);
    this.deps.log.info({ shard: this.unit, epoch: this.epoch, seq: this.actor.lastSeq }, 'shard actor drained');
  }

  /** Stops timers and the mailbox; queries still queued get ADAGG_E_SHARD_UNAVAILABLE. */
  private dispose(): void {
    this.live = false;
    behindHosts.delete(this);
    if (this.tickTimer) this.deps.clock.clearTimeout(this.tickTimer);
    this.mailbox.close();
    for (const m of this.mailbox.clear()) {
      if (m.type === 'query') m.reply.reject(unavailable(this.unit));
    }
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

/** Incarnations of this thread (worker) last seen behind their stream: warm-ups wait until none is. */
const behindHosts = new Set<Incarnation>();

export function unavailable(shard: UnitId, cause?: unknown): AdaggError {
  return new AdaggError(ErrorCode.ShardUnavailable, `shard ${shard} actor is not running here`, { cause });
}
