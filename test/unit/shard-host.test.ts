import type { NatsConnection } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { shardActors } from '../../src/actors/index.ts';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import { encodeBatch } from '../../src/model/batch-codec.ts';
import type { Click } from '../../src/model/click.ts';
import type { ShardActorConfig } from '../../src/model/shard-config.ts';
import type { ShardStatus } from '../../src/model/shard-queries.ts';
import { MINUTE_MS, minuteOf } from '../../src/model/time.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { RuntimeEvents } from '../../src/runtime/events.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { QueryResponder } from '../../src/runtime/query-responder.ts';
import type { StreamMessage } from '../../src/runtime/shard-feed.ts';
import { ShardHost, type ShardFeedPort, type ShardHostOptions } from '../../src/runtime/shard-host.ts';
import { topology } from '../../src/runtime/topology.ts';
import { MemoryShardStore } from '../helpers/memory-state.ts';

// ---------------------------------------------------------------------------------------------
// Harness: a ShardHost with the real shard actor on a ManualClock, an in-memory fenced store and a
// fake feed the test delivers stream messages through. Nothing sleeps: the test waits for the
// host's own events (a batch applied, a tick done) before it looks.
// ---------------------------------------------------------------------------------------------

const T0 = Date.UTC(2024, 6, 9, 0, 0, 0);
const M0 = minuteOf(T0);
const at = (minute: number, sec = 0): number => T0 + minute * MINUTE_MS + sec * 1000;

/** Stands in for the JetStream ordered consumer: delivers what the test pushes, in order. */
class FakeFeed implements ShardFeedPort {
  /** What `pending()` answers: messages still at the server. */
  backlog = 0;
  startSeq: number | undefined;
  stops = 0;
  /** `start` resolves only once this does (holds the host before its loop). */
  gate: Promise<void> = Promise.resolve();
  private onMessage: ((m: StreamMessage) => Promise<void>) | undefined;
  private seq = 0;

  async start(startSeq: number, onMessage: (m: StreamMessage) => Promise<void>): Promise<void> {
    this.startSeq = startSeq;
    this.seq = startSeq - 1;
    this.onMessage = onMessage;
    await this.gate;
  }

  async pending(): Promise<number> {
    return this.backlog;
  }

  async stop(): Promise<void> {
    this.stops++;
  }

  /** Delivers the next stream message; resolves once the mailbox accepted it. */
  deliver(clicks: Click[], pending = 0): Promise<void> {
    if (!this.onMessage) throw new Error('feed not started');
    return this.onMessage({ seq: ++this.seq, pending, data: encodeBatch(clicks) });
  }
}

/** Lets the host's loop run until `cond` holds (or fails after many turns: a bug, not slowness). */
async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 5000; i++) {
    if (cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`never happened: ${what}`);
}

let clickId = 0;
const click = (ts: number, ad = 'ad-1'): Click => ({ click_id: `c${++clickId}`, ad_id: ad, ts, country: 'US' });

function harness(opts: Partial<ShardHostOptions> = {}, actor: Partial<ShardActorConfig> = {}, startMs = at(0, 5)) {
  const clock = new ManualClock(startMs);
  const store = new MemoryShardStore();
  const feed = new FakeFeed();
  const events = new RuntimeEvents();
  let batches = 0;
  let ticks = 0;
  events.on('batch', () => batches++);
  events.on('progress', () => ticks++);
  const host = new ShardHost(
    3,
    {
      actor: { shard: 3, dimensions: ['country'], allowedLatenessMs: 10_000, idleTimeoutMs: 5_000, retentionMs: 10 * MINUTE_MS, ...actor },
      mailboxCapacity: 8,
      tickIntervalMs: 1000,
      snapshotIntervalMs: 3_600_000,
      snapshotEveryMessages: 1000,
      ...opts,
    },
    { actors: shardActors, store, publishRankings: () => undefined, feed: () => feed, deadLetters: { publish: async () => undefined }, clock, events, log: silentLogger },
  );
  const abort = new AbortController();
  const running = host.run(abort.signal);
  const h = {
    clock,
    store,
    feed,
    host,
    abort,
    running,
    /** Commits written so far. */
    get commits(): number {
      return store.state.commits;
    },
    /** Click batches applied so far. */
    get batches(): number {
      return batches;
    },
    started: () => until('the feed started', () => feed.startSeq !== undefined),
    /** Delivers one message and waits until the actor applied it. */
    async apply(clicks: Click[], pending = 0): Promise<void> {
      const n = batches;
      await feed.deliver(clicks, pending);
      await until('the batch was applied', () => batches > n);
    },
    /** Moves the clock by whole ticks, waiting for each tick to be handled. */
    async tickFor(ms: number): Promise<void> {
      for (let t = 0; t < ms; t += 1000) {
        const n = ticks;
        clock.advance(1000);
        await until('the tick was handled', () => ticks > n);
      }
    },
  };
  return h;
}

describe('ShardHost commit cadence', () => {
  it('commits after snapshotIntervalMs, not before', async () => {
    // A long idle timeout: no minute closes by the clock, so only the interval can commit.
    const h = harness({ snapshotIntervalMs: 5_000 }, { idleTimeoutMs: 600_000 });
    await h.started();
    await h.apply([click(at(0, 4))]);
    await h.tickFor(4_000);
    expect(h.commits).toBe(0);
    await h.tickFor(1_000);
    expect(h.commits).toBe(1);
    expect(h.store.state.seq).toBe(1);
    expect(h.store.state.get(M0, 'ad-1')).toBe(1);
    h.abort.abort();
    await h.running;
  });

  it('commits every snapshotEveryMessages messages', async () => {
    const h = harness({ snapshotEveryMessages: 3 });
    await h.started();
    await h.apply([click(at(0, 1))]);
    await h.apply([click(at(0, 2))]);
    expect(h.commits).toBe(0);
    await h.apply([click(at(0, 3))]);
    expect(h.commits).toBe(1);
    expect(h.store.state.seq).toBe(3);
    await h.apply([click(at(0, 4))]);
    expect(h.commits).toBe(1);
    h.abort.abort();
    await h.running;
  });

  it('commits at once when an idle, caught-up shard closes a minute by the clock', async () => {
    const h = harness();
    await h.started();
    await h.apply([click(at(0, 5))]);
    // Idle advance: watermark = now − lateness (10 s) − idle (5 s); minute 0 closes at 1:15.
    await h.tickFor(at(1, 14) - at(0, 5));
    const before = h.commits;
    expect(h.store.state.closedThrough).toBe(M0 - 1);
    await h.tickFor(1_000);
    expect(h.commits).toBe(before + 1);
    expect(h.store.state.closedThrough).toBe(M0);
    expect(h.store.state.get(M0, 'ad-1')).toBe(1);
    h.abort.abort();
    await h.running;
  });
});

describe('ShardHost idle and caught-up logic', () => {
  it('does not close minutes by the clock while the server still holds messages for it', async () => {
    const h = harness();
    await h.started();
    await h.apply([click(at(0, 5))]);
    h.feed.backlog = 3; // the feed's server view: not caught up (a stalled consumer, say)
    await h.tickFor(at(3, 0) - at(0, 5));
    expect(h.host.lag).toBe(3);
    // Still where the click's own watermark (0:05 − 10 s) put it: minute −1 is open.
    expect((await h.host.ask({ type: 'status' })).closedThrough).toBe(M0 - 2);
    expect(h.commits).toBe(0);
    h.feed.backlog = 0;
    await h.tickFor(2_000);
    expect((await h.host.ask({ type: 'status' })).closedThrough).toBe(M0 + 1);
    expect(h.store.state.closedThrough).toBe(M0 + 1);
    h.abort.abort();
    await h.running;
  });

  it('commits as soon as it caught up after a backlog, and not when it never was behind', async () => {
    const h = harness();
    await h.started();
    for (const pending of [4, 3, 2, 1]) await h.apply([click(at(0, 10 - pending))], pending);
    expect(h.commits).toBe(0);
    h.clock.advance(300); // past CAUGHT_UP_COMMIT_MIN_MS since the start, before the first tick
    await h.apply([click(at(0, 10))], 0);
    expect(h.commits).toBe(1);
    expect(h.store.state.seq).toBe(5);
    // At the stream's end without a backlog since that commit: no commit per message.
    h.clock.advance(300);
    await h.apply([click(at(0, 11))], 0);
    await h.apply([click(at(0, 12))], 0);
    expect(h.commits).toBe(1);
    h.abort.abort();
    await h.running;
  });
});

describe('ShardHost drain', () => {
  it('commits everything applied when aborted, stops its feed, then stops answering', async () => {
    const h = harness();
    await h.started();
    await h.apply([click(at(0, 1)), click(at(0, 2), 'ad-2')]);
    await h.apply([click(at(0, 3))]);
    expect(h.commits).toBe(0);
    h.abort.abort();
    await h.running;
    expect(h.commits).toBe(1);
    expect(h.store.state.seq).toBe(2);
    expect(h.store.state.get(M0, 'ad-1')).toBe(2);
    expect(h.store.state.get(M0, 'ad-2')).toBe(1);
    expect(h.feed.stops).toBeGreaterThan(0);
    await expect(h.host.ask({ type: 'status' })).rejects.toMatchObject({ code: ErrorCode.ShardUnavailable });
  });

  it('resumes after the committed sequence in its next incarnation', async () => {
    const h = harness();
    await h.started();
    await h.apply([click(at(0, 1))]);
    h.abort.abort();
    await h.running;
    const again = new AbortController();
    h.feed.startSeq = undefined;
    const running = h.host.run(again.signal);
    await h.started();
    expect(h.feed.startSeq).toBe(2);
    expect(h.host.epoch).toBe(2);
    expect((await h.host.ask({ type: 'query.ad', adId: 'ad-1', fromMinute: M0, toMinute: M0 + 1 })).minutes).toEqual([[M0, 1]]);
    again.abort();
    await running;
  });
});

describe('ShardHost queries', () => {
  it('answers queries before queued stream messages, and refuses one past the query lane with MAILBOX_FULL', async () => {
    let release!: () => void;
    const h = harness({ queryCapacity: 2 });
    h.feed.gate = new Promise<void>((r) => (release = r));
    await h.started(); // started, but its loop is held until the gate opens
    await h.feed.deliver([click(at(0, 1))]);
    const first = h.host.ask({ type: 'status' });
    const second = h.host.ask({ type: 'query.ad', adId: 'ad-1', fromMinute: M0, toMinute: M0 + 1 });
    const third = h.host.ask({ type: 'status' });
    await expect(third).rejects.toBeInstanceOf(AdaggError);
    await expect(third).rejects.toMatchObject({ code: ErrorCode.MailboxFull });
    release();
    // Both answered from the state before the queued batch was applied.
    expect((await first).lastSeq).toBe(0);
    expect((await second).minutes).toEqual([]);
    await until('the batch was applied', () => h.batches === 1);
    const after = await h.host.ask({ type: 'query.ad', adId: 'ad-1', fromMinute: M0, toMinute: M0 + 1 });
    expect(after.minutes).toEqual([[M0, 1]]);
    h.abort.abort();
    await h.running;
  });

  it('the query responder answers a full lane with the ADAGG_E_MAILBOX_FULL code', async () => {
    let release!: () => void;
    const h = harness({ queryCapacity: 1 });
    h.feed.gate = new Promise<void>((r) => (release = r));
    await h.started();
    const callbacks: Array<(err: Error | null, msg: { data: Uint8Array; respond(d: string): boolean }) => void> = [];
    const nc = {
      subscribe: (_subject: string, opts: { callback: (typeof callbacks)[number] }) => {
        callbacks.push(opts.callback);
        return { unsubscribe: () => undefined };
      },
    } as unknown as NatsConnection;
    const responder = new QueryResponder(nc, topology('t'), 'n1', silentLogger);
    responder.serve(h.host);
    const replies: string[] = [];
    const request = (op: string): void =>
      callbacks[0]!(null, { data: new TextEncoder().encode(JSON.stringify({ op })), respond: (d) => replies.push(d) > 0 });
    request('status');
    request('status');
    await until('the refusal was sent', () => replies.length === 1);
    expect(JSON.parse(replies[0]!)).toMatchObject({ ok: false, code: ErrorCode.MailboxFull });
    release();
    await until('the queued query was answered', () => replies.length === 2);
    const ok = JSON.parse(replies[1]!) as { ok: true; result: ShardStatus & { node: string; epoch: number } };
    expect(ok).toMatchObject({ ok: true, result: { shard: 3, node: 'n1', epoch: 1 } });
    responder.close();
    h.abort.abort();
    await h.running;
  });
});
