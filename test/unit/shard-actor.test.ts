import { encode } from '../../src/model/msgpack.ts';
import { describe, expect, it } from 'vitest';
import { ShardActor } from '../../src/actors/shard-actor.ts';
import { fnv1a32Utf16, murmur3_32 } from '../../src/actors/shard/click-dedup.ts';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import type { BatchResult } from '../../src/model/apply-results.ts';
import type { Click } from '../../src/model/click.ts';
import type { ShardActorConfig } from '../../src/model/shard-config.ts';
import { MINUTE_MS, minuteOf } from '../../src/model/time.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import type { CountWrite, ShardCommit } from '../../src/runtime/shard-store.ts';
import { rng } from '../helpers/click-stream.ts';
import { MemoryState } from '../helpers/memory-state.ts';

// ---------------------------------------------------------------------------------------------
// Harness: a ShardActor on a ManualClock with an in-memory store that behaves like the Redis one
// (absolute per-field SETs on commit; reads of absent fields return 0).
// ---------------------------------------------------------------------------------------------

const T0 = Date.UTC(2024, 6, 9, 0, 0, 0); // a minute boundary
const M0 = minuteOf(T0);
const at = (minute: number, sec = 0, ms = 0): number => T0 + minute * MINUTE_MS + sec * 1000 + ms;

const CONFIG: ShardActorConfig = {
  shard: 3,
  dimensions: ['country'],
  allowedLatenessMs: 10_000,
  idleTimeoutMs: 5_000,
  retentionMs: 5 * MINUTE_MS,
};

const fieldKey = (minute: number, dim: string | null, value: string | null, ad: string): string =>
  `${minute}|${dim ?? ''}|${value ?? ''}|${ad}`;

/** The committed state, applied as the Redis store applies a commit (test/helpers/memory-state.ts). */
class FakeStore extends MemoryState {}

class Sim {
  readonly clock: ManualClock;
  readonly store = new FakeStore();
  actor: ShardActor;
  committedSeq = 0;
  constructor(
    readonly config: ShardActorConfig = CONFIG,
    startMs = T0,
  ) {
    this.clock = new ManualClock(startMs);
    this.actor = new ShardActor(config, this.ports());
  }
  ports() {
    return { clock: this.clock, readClosed: this.store.readClosed };
  }
  apply(seq: number, clicks: readonly Click[]): Promise<BatchResult> {
    return this.actor.applyBatch(seq, clicks);
  }
  /** Like the shard host: prepare, persist atomically, then tell the actor. */
  commit(force = false): ShardCommit | null {
    const c = this.actor.prepareCommit(this.committedSeq, force);
    if (!c) return null;
    this.store.apply(c);
    this.actor.committed(c);
    this.committedSeq = c.seq;
    return c;
  }
  /** Loses the in-memory actor and restores from the last committed state. */
  async crash(): Promise<void> {
    const head = this.store.head;
    this.actor = head ? await ShardActor.restore(head, this.store.reader(), this.config, this.ports()) : new ShardActor(this.config, this.ports());
    this.committedSeq = head ? this.actor.lastSeq : 0;
  }
}

function click(id: string, ad: string, ts: number, country?: string, device?: string): Click {
  const c: Click = { click_id: id, ad_id: ad, ts };
  if (country !== undefined) c.country = country;
  if (device !== undefined) c.attrs = { device };
  return c;
}

/** Writes as `{ "<minute - M0>|<dim>|<value>": { ad: n } }`; a field written twice fails. */
/** The writes of closed minutes (final counts); later minutes are open ones, persisted in place. */
function finals(c: ShardCommit): CountWrite[] {
  return c.writes.filter((w) => w.minute <= c.closedThrough);
}
function provisional(c: ShardCommit): CountWrite[] {
  return c.writes.filter((w) => w.minute > c.closedThrough);
}

function writesByField(writes: readonly CountWrite[]): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const w of writes) {
    const k = `${w.minute - M0}|${w.dim ?? ''}|${w.value ?? ''}`;
    expect(out[k], `write ${k} appears twice`).toBeUndefined();
    const counts: Record<string, number> = {};
    for (let i = 0; i + 1 < w.counts.length; i += 2) counts[w.counts[i] as string] = w.counts[i + 1] as number;
    out[k] = counts;
  }
  return out;
}

function flatToObj(flat: ReadonlyArray<string | number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const k = flat[i] as string;
    expect(out[k], `ad ${k} appears twice`).toBeUndefined();
    out[k] = flat[i + 1] as number;
  }
  return out;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof AdaggError) return e.code;
    return `not an AdaggError: ${String(e)}`;
  }
  return 'no error';
}


// ---------------------------------------------------------------------------------------------

describe('ShardActor: one-minute UTC windows', () => {
  it('counts per ad and per country value, split at exact minute boundaries', async () => {
    const sim = new Sim();
    const res = await sim.apply(1, [
      click('c1', 'a1', at(0, 0), 'US'),
      click('c2', 'a1', at(0, 59, 999), 'US'), // last ms of minute 0
      click('c3', 'a1', at(0, 30), 'DE'),
      click('c4', 'a1', at(1, 0), 'US'), // first ms of minute 1
      click('c5', 'a2', at(0, 10), 'US'),
      click('c6', 'a1', at(1, 5)), // no country: counts in the total only
    ]);
    expect(res).toEqual({ skipped: false, counted: 6, duplicates: 0, late: 0, tooOld: [] });

    const total = sim.actor.queryAd({ adId: 'a1', fromMinute: M0, toMinute: M0 + 2 });
    expect(total.minutes).toEqual([
      [M0, 3],
      [M0 + 1, 2],
    ]);
    expect(total.corrections).toEqual([]);

    const us = sim.actor.queryAd({ adId: 'a1', fromMinute: M0, toMinute: M0 + 2, dim: 'country', value: 'US' });
    expect(us.minutes).toEqual([
      [M0, 2],
      [M0 + 1, 1],
    ]);
    const de = sim.actor.queryAd({ adId: 'a1', fromMinute: M0, toMinute: M0 + 2, dim: 'country', value: 'DE' });
    expect(de.minutes).toEqual([
      [M0, 1],
      [M0 + 1, 0],
    ]);
    const a2 = sim.actor.queryAd({ adId: 'a2', fromMinute: M0, toMinute: M0 + 2 });
    expect(a2.minutes).toEqual([
      [M0, 1],
      [M0 + 1, 0],
    ]);
    // The query range is half-open: [from, to).
    expect(sim.actor.queryAd({ adId: 'a1', fromMinute: M0 + 1, toMinute: M0 + 2 }).minutes).toEqual([[M0 + 1, 2]]);
    // A minute nobody clicked in is not held at all.
    expect(sim.actor.queryAd({ adId: 'a1', fromMinute: M0 + 2, toMinute: M0 + 5 }).minutes).toEqual([]);
  });

  it('aggregates extra configured dimensions carried in attrs', async () => {
    const sim = new Sim({ ...CONFIG, dimensions: ['country', 'device'] });
    await sim.apply(1, [
      click('c1', 'a1', at(0, 1), 'US', 'ios'),
      click('c2', 'a1', at(0, 2), 'DE', 'ios'),
      click('c3', 'a1', at(0, 3), undefined, 'web'),
    ]);
    const q = (dim: string, value: string) =>
      sim.actor.queryAd({ adId: 'a1', fromMinute: M0, toMinute: M0 + 1, dim, value }).minutes;
    expect(q('device', 'ios')).toEqual([[M0, 2]]);
    expect(q('device', 'web')).toEqual([[M0, 1]]);
    expect(q('country', 'US')).toEqual([[M0, 1]]);
    expect(sim.actor.queryAd({ adId: 'a1', fromMinute: M0, toMinute: M0 + 1 }).minutes).toEqual([[M0, 3]]);
  });
});

describe('ShardActor: watermark and closing', () => {
  it('watermark = max ts - allowed lateness; minutes ending at or before it close with exact counts', async () => {
    const sim = new Sim();
    expect(sim.actor.watermark).toBe(-1);
    expect(sim.actor.closedThrough).toBe(-1);
    await sim.apply(1, [
      click('c1', 'a1', at(0, 5), 'US'),
      click('c2', 'a1', at(0, 6), 'DE'),
      click('c3', 'a2', at(0, 7), 'US'),
      click('c4', 'a1', at(1, 1), 'US'),
      click('c5', 'a3', at(2, 0)),
    ]);
    // max ts = minute 2 + 0 s -> watermark = minute 1 + 50 s: minute 0 closed, minute 1 still open.
    expect(sim.actor.watermark).toBe(at(1, 50));
    expect(sim.actor.closedThrough).toBe(M0);
    // An earlier timestamp never moves the watermark back.
    await sim.apply(2, [click('c6', 'a1', at(1, 2), 'US')]);
    expect(sim.actor.watermark).toBe(at(1, 50));

    await sim.apply(3, [click('c7', 'a3', at(3, 15))]);
    expect(sim.actor.watermark).toBe(at(3, 5));
    expect(sim.actor.closedThrough).toBe(M0 + 2);

    const c = sim.actor.prepareCommit(0);
    expect(c).not.toBeNull();
    expect(c!.seq).toBe(3);
    expect(c!.watermark).toBe(at(3, 5));
    expect(c!.closedThrough).toBe(M0 + 2);
    expect(writesByField(finals(c!))).toEqual({
      '0||': { a1: 2, a2: 1 },
      '0|country|US': { a1: 1, a2: 1 },
      '0|country|DE': { a1: 1 },
      '1||': { a1: 2 },
      '1|country|US': { a1: 2 },
      '2||': { a3: 1 },
    });
    // Minute 3 is still open: held in memory (queries ask the actor) and persisted in place as provisional.
    expect(sim.actor.queryAd({ adId: 'a3', fromMinute: M0 + 3, toMinute: M0 + 4 }).minutes).toEqual([[M0 + 3, 1]]);
    expect(writesByField(provisional(c!))).toEqual({ '3||': { a3: 1 } });
  });

  it('a minute closes exactly when the watermark reaches its end', async () => {
    const sim = new Sim();
    await sim.apply(1, [click('c1', 'a1', at(0, 30)), click('c2', 'a1', at(1, 9, 999))]);
    expect(sim.actor.watermark).toBe(at(0, 59, 999));
    expect(sim.actor.closedThrough).toBe(M0 - 1); // minute 0 ends at 1:00.000 > watermark
    await sim.apply(2, [click('c3', 'a1', at(1, 10))]);
    expect(sim.actor.watermark).toBe(at(1, 0));
    expect(sim.actor.closedThrough).toBe(M0);
    expect(writesByField(finals(sim.actor.prepareCommit(0)!))).toEqual({ '0||': { a1: 1 } });
  });

  it('after a commit, closed minutes are no longer held (the store answers for them)', async () => {
    const sim = new Sim();
    await sim.apply(1, [click('c1', 'a1', at(0, 30)), click('c2', 'a1', at(2, 30))]);
    expect(sim.actor.closedThrough).toBe(M0 + 1);
    // Closed but not yet committed: still answered from memory.
    expect(sim.actor.queryAd({ adId: 'a1', fromMinute: M0, toMinute: M0 + 3 }).minutes).toEqual([
      [M0, 1],
      [M0 + 2, 1],
    ]);
    sim.commit();
    expect(sim.store.get(M0, 'a1')).toBe(1);
    expect(sim.actor.queryAd({ adId: 'a1', fromMinute: M0, toMinute: M0 + 3 }).minutes).toEqual([[M0 + 2, 1]]);
    expect(sim.actor.status().pendingClosedMinutes).toBe(0);
    expect(sim.actor.status().openMinutes).toBe(1);
  });
});

describe('ShardActor: late clicks and corrections', () => {
  async function closedAndCommitted(): Promise<Sim> {
    const sim = new Sim();
    await sim.apply(1, [
      click('c1', 'a1', at(0, 10), 'US'),
      click('c2', 'a1', at(0, 20), 'DE'),
      click('c3', 'a2', at(0, 30), 'US'),
      click('c4', 'a9', at(2, 30)),
    ]);
    expect(sim.actor.closedThrough).toBe(M0 + 1);
    sim.commit();
    expect(sim.store.get(M0, 'a1')).toBe(2);
    expect(sim.store.get(M0, 'a1', 'country', 'US')).toBe(1);
    sim.store.readCalls.length = 0;
    return sim;
  }

  it('a late click into a committed minute writes the absolute corrected count (total and country)', async () => {
    const sim = await closedAndCommitted();
    const res = await sim.apply(2, [click('late1', 'a1', at(0, 45), 'US')]);
    expect(res).toEqual({ skipped: false, counted: 1, duplicates: 0, late: 1, tooOld: [] });
    expect(sim.store.readCalls).toEqual([
      [
        { minute: M0, dim: null, value: null, adId: 'a1' },
        { minute: M0, dim: 'country', value: 'US', adId: 'a1' },
      ],
    ]);
    // Before the commit, the query reply carries the corrected value as an override.
    const q = sim.actor.queryAd({ adId: 'a1', fromMinute: M0, toMinute: M0 + 1 });
    expect(q.minutes).toEqual([]);
    expect(q.corrections).toEqual([[M0, 3]]);
    expect(
      sim.actor.queryAd({ adId: 'a1', fromMinute: M0, toMinute: M0 + 1, dim: 'country', value: 'US' }).corrections,
    ).toEqual([[M0, 2]]);

    const c = sim.commit()!;
    // Only the touched fields, as absolute values (stored + late), never increments.
    expect(writesByField(c.writes)).toEqual({ '0||': { a1: 3 }, '0|country|US': { a1: 2 } });
    expect(sim.store.get(M0, 'a1')).toBe(3);
    expect(sim.store.get(M0, 'a1', 'country', 'US')).toBe(2);
    expect(sim.store.get(M0, 'a1', 'country', 'DE')).toBe(1);
    expect(sim.store.get(M0, 'a2')).toBe(1);

    // A second late click after that commit reads the corrected value back and builds on it.
    await sim.apply(3, [click('late2', 'a1', at(0, 50), 'DE')]);
    expect(writesByField(sim.commit()!.writes)).toEqual({ '0||': { a1: 4 }, '0|country|DE': { a1: 2 } });
    expect(sim.store.get(M0, 'a1')).toBe(4);
  });

  it('several late clicks to one field read it once and add up', async () => {
    const sim = await closedAndCommitted();
    const res = await sim.apply(2, [
      click('l1', 'a2', at(0, 1), 'US'),
      click('l2', 'a2', at(0, 2), 'US'),
    ]);
    expect(res.late).toBe(2);
    await sim.apply(3, [click('l3', 'a2', at(0, 3), 'FR')]);
    // Batch 2 read the two a2 fields once; batch 3 only the new FR field (the total is already held).
    expect(sim.store.readCalls).toEqual([
      [
        { minute: M0, dim: null, value: null, adId: 'a2' },
        { minute: M0, dim: 'country', value: 'US', adId: 'a2' },
      ],
      [{ minute: M0, dim: 'country', value: 'FR', adId: 'a2' }],
    ]);
    expect(writesByField(sim.commit()!.writes)).toEqual({
      '0||': { a2: 4 },
      '0|country|US': { a2: 3 },
      '0|country|FR': { a2: 1 },
    });
  });

  it('a late click into a closed minute that had no clicks starts from 0', async () => {
    const sim = await closedAndCommitted();
    await sim.apply(2, [click('l1', 'a5', at(1, 0), 'JP')]);
    expect(writesByField(sim.commit()!.writes)).toEqual({ '1||': { a5: 1 }, '1|country|JP': { a5: 1 } });
  });

  it('a late click into a closed but not yet committed minute adds to it without a store read', async () => {
    const sim = new Sim();
    await sim.apply(1, [click('c1', 'a1', at(0, 10), 'US'), click('c2', 'a1', at(2, 0))]);
    expect(sim.actor.closedThrough).toBe(M0);
    const res = await sim.apply(2, [click('l1', 'a1', at(0, 59), 'US')]);
    expect(res.late).toBe(1);
    expect(sim.store.readCalls).toEqual([]);
    expect(writesByField(finals(sim.commit()!))).toEqual({ '0||': { a1: 2 }, '0|country|US': { a1: 2 } });
  });

  it('a failing store read fails the batch without advancing lastSeq', async () => {
    const sim = await closedAndCommitted();
    const actor = new ShardActor(CONFIG, {
      clock: sim.clock,
      readClosed: () => Promise.reject(new Error('redis down')),
    });
    await actor.applyBatch(1, [click('x', 'a1', at(3, 0))]);
    await expect(actor.applyBatch(2, [click('late', 'a1', at(0, 0))])).rejects.toThrow('redis down');
    expect(actor.lastSeq).toBe(1);
  });
});

describe('ShardActor: dedupe by click_id', () => {
  it('counts a click once within a batch, across batches and after its minute closed', async () => {
    const sim = new Sim();
    const r1 = await sim.apply(1, [
      click('c1', 'a1', at(0, 1), 'US'),
      click('c1', 'a1', at(0, 1), 'US'),
      click('c2', 'a1', at(0, 2), 'US'),
    ]);
    expect(r1).toMatchObject({ counted: 2, duplicates: 1 });
    const r2 = await sim.apply(2, [click('c2', 'a1', at(0, 2), 'US'), click('c3', 'a1', at(0, 3), 'US')]);
    expect(r2).toMatchObject({ counted: 1, duplicates: 1 });
    expect(sim.actor.queryAd({ adId: 'a1', fromMinute: M0, toMinute: M0 + 1 }).minutes).toEqual([[M0, 3]]);

    await sim.apply(3, [click('c4', 'a1', at(3, 0))]); // closes minute 0
    expect(sim.actor.closedThrough).toBe(M0 + 1);
    sim.commit();
    expect(sim.store.get(M0, 'a1')).toBe(3);
    sim.store.readCalls.length = 0;

    const r4 = await sim.apply(4, [click('c1', 'a1', at(0, 1), 'US'), click('c3', 'a1', at(0, 3), 'US')]);
    expect(r4).toEqual({ skipped: false, counted: 0, duplicates: 2, late: 0, tooOld: [] });
    expect(sim.store.readCalls).toEqual([]); // nothing to correct
    const c = sim.commit();
    expect(c?.writes ?? []).toEqual([]); // only the sequence moved
    expect(sim.store.get(M0, 'a1')).toBe(3);
  });

  it('a replayed message (seq <= lastSeq) is skipped entirely', async () => {
    const sim = new Sim();
    await sim.apply(5, [click('c1', 'a1', at(0, 1))]);
    const wm = sim.actor.watermark;
    expect(wm).toBe(at(0, 1) - 10_000);
    const again = await sim.apply(5, [click('c2', 'a1', at(0, 2)), click('c3', 'a1', at(9, 0))]);
    expect(again).toEqual({ skipped: true, counted: 0, duplicates: 0, late: 0, tooOld: [] });
    const older = await sim.apply(3, [click('c4', 'a1', at(0, 3))]);
    expect(older.skipped).toBe(true);
    expect(sim.actor.lastSeq).toBe(5);
    expect(sim.actor.watermark).toBe(wm); // the 9-minute click of the skipped batch moved nothing
    expect(sim.actor.queryAd({ adId: 'a1', fromMinute: M0, toMinute: M0 + 10 }).minutes).toEqual([[M0, 1]]);
    sim.commit();
    expect(sim.actor.prepareCommit(5)).toBeNull();
    expect((await sim.apply(5, [click('c5', 'a1', at(0, 2))])).skipped).toBe(true);
    expect(sim.actor.prepareCommit(5)).toBeNull(); // a skipped message changes nothing to persist
    // The skipped clicks were not remembered as seen: delivered under a new sequence they count.
    const next = await sim.apply(6, [click('c2', 'a1', at(0, 2))]);
    expect(next).toMatchObject({ counted: 1, duplicates: 0 });
  });
});

describe('ShardActor: retention horizon', () => {
  it('clicks older than watermark - retention are returned in tooOld and not counted', async () => {
    const sim = new Sim();
    await sim.apply(1, [click('c1', 'a1', at(0, 5)), click('c2', 'a1', at(10, 10))]);
    const wm = sim.actor.watermark;
    expect(wm).toBe(at(10, 0));
    const old = click('old', 'a1', wm - CONFIG.retentionMs - 1, 'US');
    const edge = click('edge', 'a1', wm - CONFIG.retentionMs, 'US'); // exactly at the horizon: still counted
    const res = await sim.apply(2, [old, edge]);
    expect(res.tooOld).toEqual([old]);
    expect(res.counted).toBe(1);
    expect(res.late).toBe(1);
    expect(res.duplicates).toBe(0);
    const c = sim.commit()!;
    expect(writesByField(finals(c))).toEqual({
      '0||': { a1: 1 },
      '5||': { a1: 1 },
      '5|country|US': { a1: 1 },
    });
    expect(writesByField(provisional(c))).toEqual({ '10||': { a1: 1 } });
    // The too-old click is never counted anywhere, even if resent.
    const again = await sim.apply(3, [old]);
    expect(again.tooOld).toEqual([old]);
    expect(again.counted).toBe(0);
    expect(minuteOf(old.ts)).toBe(M0 + 4);
    expect(sim.store.get(M0 + 4, 'a1')).toBeUndefined();
    expect(sim.commit()?.writes ?? []).toEqual([]);
  });
});

describe('ShardActor: idle watermark advance', () => {
  it('tick(true) after idleTimeoutMs without batches advances to now - lateness - idle; tick(false) does not', async () => {
    const sim = new Sim(CONFIG, at(0, 31));
    await sim.apply(1, [click('c1', 'a1', at(0, 30), 'US')]);
    expect(sim.actor.watermark).toBe(at(0, 20));
    expect(sim.actor.closedThrough).toBe(M0 - 1);

    sim.clock.advance(4_999);
    expect(sim.actor.tick(true)).toBe(false);
    expect(sim.actor.watermark).toBe(at(0, 20)); // not idle long enough yet

    sim.clock.advance(1); // now = 0:36, idle for exactly 5 s
    expect(sim.actor.tick(true)).toBe(false);
    expect(sim.actor.watermark).toBe(at(0, 21)); // 0:36 - 10 s - 5 s

    sim.clock.set(at(1, 15));
    expect(sim.actor.tick(false)).toBe(false); // not caught up: nothing moves
    expect(sim.actor.watermark).toBe(at(0, 21));
    expect(sim.actor.closedThrough).toBe(M0 - 1);

    expect(sim.actor.tick(true)).toBe(true);
    expect(sim.actor.watermark).toBe(at(1, 0));
    expect(sim.actor.closedThrough).toBe(M0);
    expect(writesByField(sim.commit()!.writes)).toEqual({ '0||': { a1: 1 }, '0|country|US': { a1: 1 } });
  });

  it('a batch restarts the idle timer', async () => {
    const sim = new Sim(CONFIG, at(2, 0));
    await sim.apply(1, [click('c1', 'a1', at(0, 30))]);
    sim.clock.advance(4_000);
    await sim.apply(2, [click('c2', 'a1', at(0, 31))]);
    sim.clock.advance(4_000); // 8 s since the first batch, 4 s since the last one
    const before = sim.actor.watermark;
    expect(sim.actor.tick(true)).toBe(false);
    expect(sim.actor.watermark).toBe(before);
    sim.clock.advance(1_000);
    expect(sim.actor.tick(true)).toBe(true); // now 2:09 -> watermark 1:54, minute 0 closes
    expect(sim.actor.watermark).toBe(at(1, 54));
    expect(sim.actor.closedThrough).toBe(M0);
  });

  it('idle advance never moves the watermark back', async () => {
    const sim = new Sim(CONFIG, T0);
    await sim.apply(1, [click('c1', 'a1', at(5, 0))]); // event time ahead of the wall clock
    sim.clock.advance(60_000);
    expect(sim.actor.tick(true)).toBe(false);
    expect(sim.actor.watermark).toBe(at(4, 50));
  });
});

describe('ShardActor: huge minutes', () => {
  // Regression: prepareCommit spread a minute's writes onto the call stack
  // (`writes.push(...toWrites(m, mc))`); a minute with ~100k+ values of one dimension
  // (ADAGG_DIMENSIONS=user_id is accepted) overflowed it and the actor restarted forever.
  it('commits a minute with 150,000 values of a dimension, open and closed', async () => {
    const sim = new Sim({ ...CONFIG, dimensions: ['user_id'] });
    const clicks: Click[] = [];
    for (let i = 0; i < 150_000; i++) clicks.push({ click_id: `c${i}`, ad_id: `ad${i % 3}`, ts: at(0, i % 60), user_id: `u${i}` });
    await sim.apply(1, clicks);
    expect(sim.actor.openWrites().length).toBe(150_001);
    const open = sim.commit()!;
    expect(open.writes.length).toBe(150_001); // every field of the open minute, persisted in place
    await sim.apply(2, [click('late-closer', 'ad0', at(2, 0))]); // closes minute 0
    expect(sim.actor.closedThrough).toBe(M0);
    sim.commit();
    expect(sim.store.get(M0, 'ad0')).toBe(50_000);
    expect(sim.store.get(M0, 'ad1', 'user_id', 'u149998')).toBe(1);
    await sim.crash();
    expect(sim.actor.status().trackedIds).toBe(150_001);
  }, 60_000);
});

describe('ShardActor: incremental state, commit and restore', () => {
  async function busyActor(): Promise<Sim> {
    const sim = new Sim({ ...CONFIG, dimensions: ['country', 'device'] });
    await sim.apply(1, [
      click('c1', 'a1', at(0, 1), 'US', 'ios'),
      click('c2', 'a2', at(0, 2), 'DE'),
      click('c3', 'a1', at(3, 0), 'US', 'web'),
      click('c4', 'a1', at(3, 20), 'US'),
      click('c5', 'a3', at(4, 5), 'FR', 'ios'),
    ]);
    sim.commit(); // minutes 0..2 closed and committed; 3 and 4 open, persisted in place
    await sim.apply(7, [click('c6', 'a2', at(3, 40), 'DE', 'web')]);
    return sim;
  }
  const core = (x: ShardActor) => {
    const st = x.status();
    return {
      shard: st.shard,
      lastSeq: st.lastSeq,
      maxEventTs: st.maxEventTs,
      watermark: st.watermark,
      closedThrough: st.closedThrough,
      openMinutes: st.openMinutes,
      pendingClosedMinutes: st.pendingClosedMinutes,
      trackedIds: st.trackedIds,
    };
  };

  it('restore from the committed head and parts preserves open counts, sequence, watermark, closedThrough and dedupe', async () => {
    const sim = await busyActor();
    sim.commit();
    const a = sim.actor;
    const b = await ShardActor.restore(sim.store.head!, sim.store.reader(), sim.config, sim.ports());
    expect(core(b)).toEqual(core(a));
    expect(core(b)).toEqual({
      shard: 3,
      lastSeq: 7,
      maxEventTs: at(4, 5),
      watermark: at(3, 55),
      closedThrough: M0 + 2,
      openMinutes: 2,
      pendingClosedMinutes: 0,
      trackedIds: 6,
    });
    for (const ad of ['a1', 'a2', 'a3']) {
      for (const f of [{}, { dim: 'country', value: 'US' }, { dim: 'country', value: 'DE' }, { dim: 'device', value: 'ios' }]) {
        const q = { adId: ad, fromMinute: M0, toMinute: M0 + 6, ...f };
        expect(b.queryAd(q)).toEqual(a.queryAd(q));
      }
    }
    expect(b.queryAd({ adId: 'a1', fromMinute: M0 + 3, toMinute: M0 + 5 }).minutes).toEqual([
      [M0 + 3, 2],
      [M0 + 4, 0],
    ]);
    expect(flatToObj(b.queryTop({ fromMinute: M0 + 3, toMinute: M0 + 5 }).counts)).toEqual({ a1: 2, a2: 1, a3: 1 });
    expect(b.head()).toEqual(sim.store.head);
    // Nothing is pending in a restored actor.
    expect(b.prepareCommit(7)).toBeNull();

    // Dedupe survives: old ids are still duplicates (open and closed minutes), new ids count.
    const res = await b.applyBatch(8, [
      click('c3', 'a1', at(3, 0), 'US'),
      click('c1', 'a1', at(0, 1), 'US'),
      click('c7', 'a1', at(3, 50), 'US'),
    ]);
    expect(res).toMatchObject({ skipped: false, counted: 1, duplicates: 2 });
    expect(b.queryAd({ adId: 'a1', fromMinute: M0 + 3, toMinute: M0 + 4 }).minutes).toEqual([[M0 + 3, 3]]);
    // And a message at or below the restored sequence is skipped.
    expect((await b.applyBatch(7, [click('z', 'a1', at(3, 1))])).skipped).toBe(true);
  });

  it('a commit carries what changed since the previous one, not the state', async () => {
    const sim = new Sim({ ...CONFIG, retentionMs: 60 * MINUTE_MS });
    let seq = 0;
    let id = 0;
    const sizes: number[] = [];
    // 40 minutes of 200 clicks a minute over 500 ads: the dedupe table and the state grow, each
    // commit carries the same amount of change.
    for (let m = 0; m < 40; m++) {
      const clicks: Click[] = [];
      for (let i = 0; i < 200; i++) clicks.push(click(`c${id++}`, `ad${(i * 7919) % 500}`, at(m, (i * 0.29) | 0), 'US'));
      await sim.apply(++seq, clicks);
      sim.commit();
      sizes.push(sim.store.commitSizes.at(-1)!);
    }
    expect(sim.actor.status().trackedIds).toBe(8_000);
    const early = sizes.slice(5, 10).reduce((x, y) => x + y, 0) / 5;
    const late = sizes.slice(35, 40).reduce((x, y) => x + y, 0) / 5;
    expect(late / early).toBeLessThan(1.2);
    expect(late).toBeLessThan(200 * 40); // a few dozen bytes per click at most
  });

  it('expired dedupe blocks are deleted by the commit after the expiry and never read back', async () => {
    const sim = new Sim();
    await sim.apply(1, [click('old', 'a1', at(0, 10))]);
    sim.commit();
    expect([...sim.store.logs.keys()]).toEqual([`k${M0}`]);
    await sim.apply(2, [click('new', 'a1', at(20, 0))]);
    sim.actor.tick(false); // expires minute 0 (retention is 5 minutes)
    sim.commit();
    expect([...sim.store.logs.keys()]).toEqual([`k${M0 + 20}`]);
    await sim.crash();
    expect(sim.actor.status().trackedIds).toBe(1);
  });

  it('a head of one shard cannot be loaded into another', async () => {
    const sim = await busyActor();
    sim.commit();
    await expect(ShardActor.restore(sim.store.head!, sim.store.reader(), { ...sim.config, shard: 4 }, sim.ports())).rejects.toMatchObject({
      code: ErrorCode.SnapshotCorrupt,
    });
  });

  it('a head naming a dedupe block that is missing fails with ADAGG_E_SNAPSHOT_CORRUPT', async () => {
    const sim = await busyActor();
    sim.commit();
    sim.store.logs.clear();
    await expect(ShardActor.restore(sim.store.head!, sim.store.reader(), sim.config, sim.ports())).rejects.toMatchObject({
      code: ErrorCode.SnapshotCorrupt,
    });
  });

  it('garbage and truncated bytes fail with ADAGG_E_SNAPSHOT_CORRUPT', async () => {
    const sim = await busyActor();
    sim.commit();
    const head = sim.store.head!;
    const r = rng(7);
    const random = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
    const cases: Uint8Array[] = [
      new Uint8Array(0),
      Uint8Array.from([0xc1]), // a never-used MessagePack byte
      new TextEncoder().encode('hello, not a snapshot'),
      head.subarray(0, head.length - 3),
      encode({ version: 1 }),
      encode([4, 3, 0, 0, 0, 0, -1, 1, [], [], null]), // unknown version
      encode([3, 3, 0, 0, 0, 0, -1, 1, [], []]), // wrong length
      encode([3, 3, 0, 0, 0, 0, -1, 0, [], [], null]), // block size 0
      encode([3, 3, 'seq', 0, 0, 0, -1, 1, [], [], null]), // wrong type
      encode([3, 3, 0, 0, 0, 0, -1, 1, ['x'], [], null]), // malformed list
      encode([1, 3, 0, 0, 0, 0, []]), // legacy, wrong length
      encode([1, 3, 0, -1, -1, -1, [], new Uint8Array(5)]), // legacy dedupe bytes of a wrong length
      encode([1, 3, 'seq', 'max', 'wm', 'closed', 42, 'not bytes']), // legacy, wrongly typed fields
    ];
    for (let i = 0; i < 50; i++) cases.push(random(1 + Math.floor(r() * 200)));
    for (const bytes of cases) {
      const got = await ShardActor.restore(bytes, sim.store.reader(), sim.config, sim.ports()).then(
        () => 'no error',
        (e: unknown) => (e instanceof AdaggError ? e.code : `not an AdaggError: ${String(e)}`),
      );
      expect(got, `bytes ${Buffer.from(bytes).toString('hex').slice(0, 40)}`).toBe(ErrorCode.SnapshotCorrupt);
    }
  });

  it('a legacy whole-state snapshot (format 1) is migrated: restored exactly, then written out as increments', async () => {
    // The layout releases before the incremental format wrote: [1, shard, lastSeq, maxEventTs,
    // watermark, closedThrough, [[minute, flatTotals, [[dim, value, flat]]]], dedupe image].
    const dedup = new Uint8Array(4 + 3 * 12);
    const dv = new DataView(dedup.buffer);
    dv.setUint32(0, 3, true);
    const ids = ['c1', 'c2', 'c3'];
    const minutes = [M0, M0 + 3, M0 + 3];
    ids.forEach((id, i) => {
      dv.setUint32(4 + i * 12, fnv1a32Utf16(id), true);
      dv.setUint32(8 + i * 12, murmur3_32(id), true);
      dv.setInt32(12 + i * 12, minutes[i]!, true);
    });
    const legacy = encode([1, 3, 9, at(3, 30), at(3, 20), M0 + 2, [[M0 + 3, ['a1', 2], [['country', 'US', ['a1', 1]]]]], dedup]);
    const sim = new Sim();
    sim.store.head = legacy;
    sim.store.seq = 9;
    await sim.crash();
    expect(core(sim.actor)).toMatchObject({ lastSeq: 9, closedThrough: M0 + 2, openMinutes: 1, trackedIds: 3 });
    expect(sim.actor.queryAd({ adId: 'a1', fromMinute: M0 + 3, toMinute: M0 + 4 }).minutes).toEqual([[M0 + 3, 2]]);
    // The first commit writes the whole migrated state out once, as increments, and a head.
    const c = sim.commit(true)!;
    expect(writesByField(c.writes)).toEqual({ '3||': { a1: 2 }, '3|country|US': { a1: 1 } });
    expect(c.ops.filter((o) => o.kind === 'append').length).toBe(2); // blocks of minutes 0 and 3
    await sim.crash();
    expect(core(sim.actor)).toMatchObject({ lastSeq: 9, closedThrough: M0 + 2, openMinutes: 1, trackedIds: 3 });
    const res = await sim.apply(10, [click('c1', 'a1', at(0, 1)), click('c3', 'a1', at(3, 1)), click('c4', 'a1', at(3, 2), 'US')]);
    expect(res).toMatchObject({ counted: 1, duplicates: 2 });
    expect(sim.actor.queryAd({ adId: 'a1', fromMinute: M0 + 3, toMinute: M0 + 4, dim: 'country', value: 'US' }).minutes).toEqual([[M0 + 3, 2]]);
  });
});

describe('ShardActor: queryTop and prepareCommit', () => {
  it('queryTop sums the held minutes inside the range, per filter', async () => {
    const sim = new Sim();
    await sim.apply(1, [
      click('c1', 'a1', at(5, 1), 'US'),
      click('c2', 'a1', at(5, 2), 'US'),
      click('c3', 'a1', at(5, 3), 'DE'),
      click('c4', 'a2', at(5, 4), 'US'),
      click('c5', 'a1', at(6, 1), 'US'),
      click('c6', 'a3', at(6, 2), 'DE'),
      click('c7', 'a3', at(6, 3), 'DE'),
      click('c8', 'a2', at(7, 1)),
    ]);
    const top = sim.actor.queryTop({ fromMinute: M0 + 5, toMinute: M0 + 7 });
    expect([...top.covered].sort((x, y) => x - y)).toEqual([M0 + 5, M0 + 6]);
    expect(flatToObj(top.counts)).toEqual({ a1: 4, a2: 1, a3: 2 });
    expect(top.closedThrough).toBe(sim.actor.closedThrough);

    const us = sim.actor.queryTop({ fromMinute: M0 + 5, toMinute: M0 + 8, dim: 'country', value: 'US' });
    expect([...us.covered].sort((x, y) => x - y)).toEqual([M0 + 5, M0 + 6, M0 + 7]);
    expect(flatToObj(us.counts)).toEqual({ a1: 3, a2: 1 });
    expect(flatToObj(sim.actor.queryTop({ fromMinute: M0 + 6, toMinute: M0 + 8 }).counts)).toEqual({ a1: 1, a2: 1, a3: 2 });
    const none = sim.actor.queryTop({ fromMinute: M0, toMinute: M0 + 5 });
    expect(none.covered).toEqual([]);
    expect(none.counts).toEqual([]);

    // Closed-but-unflushed minutes are still covered; committed ones are not.
    await sim.apply(2, [click('c9', 'a9', at(7, 30))]); // watermark 7:20 closes 5 and 6
    expect(sim.actor.closedThrough).toBe(M0 + 6);
    expect(flatToObj(sim.actor.queryTop({ fromMinute: M0 + 5, toMinute: M0 + 7 }).counts)).toEqual({ a1: 4, a2: 1, a3: 2 });
    sim.commit();
    expect(sim.actor.queryTop({ fromMinute: M0 + 5, toMinute: M0 + 7 }).covered).toEqual([]);
  });

  it('prepareCommit returns null when nothing changed since the last commit', async () => {
    const sim = new Sim();
    expect(sim.actor.prepareCommit(0)).toBeNull();
    const forced = sim.actor.prepareCommit(0, true);
    expect(forced).toMatchObject({ seq: 0, watermark: -1, closedThrough: -1, writes: [] });

    await sim.apply(4, [click('c1', 'a1', at(0, 1))]);
    const c = sim.actor.prepareCommit(0)!;
    expect(c).toMatchObject({ seq: 4 }); // the sequence, the open window and the dedupe ids changed
    expect(finals(c)).toEqual([]);
    expect(writesByField(provisional(c))).toEqual({ '0||': { a1: 1 } });
    expect(c.ops).toEqual([{ kind: 'append', part: `k${M0}`, bytes: expect.any(Uint8Array) }]);
    sim.commit();
    expect(sim.actor.prepareCommit(4)).toBeNull();

    await sim.apply(5, [click('c2', 'a1', at(2, 0))]);
    sim.commit();
    expect(sim.store.get(M0, 'a1')).toBe(1);
    expect(sim.actor.prepareCommit(5)).toBeNull();
  });
});

describe('ShardActor: live rankings', () => {
  // Regression: a late click into a closed minute that had no clicks when it closed (so no
  // retained copy existed) used to be left out of live final rankings; fixed concurrently in
  // shard-actor.ts/rankings.ts (ShardRankings.addLate creates the copy).
  it('final rankings include late clicks into a closed minute that had no clicks of its own', async () => {
    const sim = new Sim(CONFIG, at(5, 0));
    await sim.apply(1, [click('c1', 'a1', at(0, 10)), click('c2', 'a2', at(3, 30))]); // closes 0..2; 1 and 2 empty
    expect(sim.actor.closedThrough).toBe(M0 + 2);
    sim.commit();
    sim.actor.rankingUpdates(false);
    await sim.apply(2, [click('l1', 'a2', at(1, 5)), click('l2', 'a2', at(1, 6)), click('l3', 'a1', at(0, 7))]);
    expect(writesByField(sim.commit()!.writes)).toEqual({ '0||': { a1: 2 }, '1||': { a2: 2 } });
    const finals = sim.actor.rankingUpdates(false).filter((u) => u.k === 'final' && u.spec === '5//');
    expect(finals.map((u) => [u.end - M0, u.k === 'final' ? u.list : null])).toEqual([[3, ['a1', 2, 'a2', 2]]]);
  });
});

describe('ShardActor: live rankings warm up after a restart while the actor consumes', () => {
  it('late clicks during the warm-up are merged with the loaded minutes; a spec sends nothing until its minutes are back', async () => {
    const sim = new Sim(CONFIG, at(5, 0));
    await sim.apply(1, [click('c1', 'a1', at(0, 10)), click('c2', 'a2', at(0, 20)), click('c3', 'a2', at(3, 30))]);
    expect(sim.actor.closedThrough).toBe(M0 + 2);
    sim.commit();
    await sim.crash();
    sim.actor.beginRankingWarmUp();
    expect(sim.actor.rankingsWarming).toBe(true);
    // A late click before the read is issued: committed, then the read includes it.
    await sim.apply(2, [click('l0', 'a2', at(1, 1))]);
    sim.commit();
    const minutes = sim.actor.rankingWarmUpNext(100);
    expect(minutes[0]).toBe(M0 + 2); // newest first
    const stored = sim.store.minuteWrites(minutes);
    // Late clicks while the read is in flight: kept as deltas, merged when it arrives.
    await sim.apply(3, [click('l1', 'a1', at(0, 30)), click('l2', 'a1', at(1, 5))]);
    expect(sim.actor.rankingUpdates(true)).toEqual([]); // nothing until warm
    sim.commit();
    sim.actor.rankingsLoaded(stored, minutes);
    expect(sim.actor.rankingsWarming).toBe(false);
    const finals = sim.actor.rankingUpdates(false).filter((u) => u.k === 'final' && u.spec === '5//');
    expect(finals.map((u) => [u.end - M0, u.k === 'final' ? u.list : null])).toEqual([
      [1, ['a1', 2, 'a2', 1]],
      [2, ['a1', 3, 'a2', 2]],
      [3, ['a1', 3, 'a2', 2]],
    ]);
  });

  it('short windows come back before long ones', async () => {
    const sim = new Sim({ ...CONFIG, retentionMs: 90 * MINUTE_MS }, at(30, 0));
    await sim.apply(1, [click('c1', 'a1', at(1, 10)), click('c2', 'a2', at(28, 20)), click('c3', 'a2', at(29, 30))]);
    sim.commit();
    await sim.crash();
    sim.actor.beginRankingWarmUp();
    const first = sim.actor.rankingWarmUpNext(5);
    sim.actor.rankingsLoaded(sim.store.minuteWrites(first), first);
    const specs = new Set(sim.actor.rankingUpdates(false).map((u) => u.spec));
    expect(specs).toEqual(new Set(['1//'])); // 5 and 60 still wait for older minutes
    for (let next = sim.actor.rankingWarmUpNext(5); next.length > 0; next = sim.actor.rankingWarmUpNext(5)) {
      sim.actor.rankingsLoaded(sim.store.minuteWrites(next), next);
    }
    const all = sim.actor.rankingUpdates(false).filter((u) => u.k === 'final' && u.spec === '60//');
    expect(all.at(-1)).toMatchObject({ end: M0 + 29, list: ['a1', 1, 'a2', 1] });
  });
});

// ---------------------------------------------------------------------------------------------
// Randomized: 20k clicks with duplicates, late and too-old clicks, replayed messages, idle ticks,
// commits, and a crash in the middle; checked against plain Maps that count each click_id once.
// ---------------------------------------------------------------------------------------------

type Op =
  | { k: 'batch'; i: number }
  | { k: 'tick'; at: number; caughtUp: boolean }
  | { k: 'commit' }
  | { k: 'redeliver'; i: number };

interface Batch {
  seq: number;
  at: number;
  clicks: Click[];
}

function generate(seed: number, total: number) {
  const r = rng(seed);
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const countries = ['US', 'DE', 'FR', 'JP', 'BR'];
  const devices = ['ios', 'android', 'web'];
  const originals: Click[] = [];
  const batches: Batch[] = [];
  const ops: Op[] = [];
  let now = T0 + 30_000;
  let seq = 0;
  let n = 0;
  let id = 0;
  while (n < total) {
    const size = Math.min(total - n, 1 + Math.floor(r() * 50));
    now += Math.floor(r() * 4500);
    const clicks: Click[] = [];
    for (let k = 0; k < size; k++) {
      const p = r();
      if (p < 0.07 && originals.length > 0) {
        // A duplicate: an identical copy of an earlier click, mostly recent, sometimes very old.
        const j = r() < 0.7 ? originals.length - 1 - Math.floor(r() * Math.min(300, originals.length)) : Math.floor(r() * originals.length);
        clicks.push({ ...originals[j]!, ...(originals[j]!.attrs ? { attrs: { ...originals[j]!.attrs } } : {}) });
        continue;
      }
      let ts: number;
      if (p < 0.15) ts = now - 10_000 - Math.floor(r() * 7 * MINUTE_MS); // late, some past retention
      else ts = now - Math.floor(r() * 3000);
      const c = click(
        `k${id++}`,
        `ad-${Math.floor(r() * r() * 40)}`,
        ts,
        r() < 0.1 ? undefined : pick(countries),
        r() < 0.3 ? undefined : pick(devices),
      );
      originals.push(c);
      clicks.push(c);
    }
    // A batch can even repeat a click inside itself.
    if (r() < 0.05 && clicks.length > 0) clicks.push({ ...clicks[0]! });
    seq += 1 + Math.floor(r() * 3);
    batches.push({ seq, at: now, clicks });
    ops.push({ k: 'batch', i: batches.length - 1 });
    n += size;
    if (r() < 0.05) ops.push({ k: 'redeliver', i: Math.floor(r() * batches.length) });
    if (r() < 0.3) {
      now += r() < 0.03 ? 60_000 + Math.floor(r() * 60_000) : Math.floor(r() * 8000);
      ops.push({ k: 'tick', at: now, caughtUp: r() < 0.8 });
    }
    if (r() < 0.1) ops.push({ k: 'commit' });
  }
  return { batches, ops, r };
}

/** An independent model of what the actor must do, from plain Maps and Sets. */
class Model {
  /** Counted clicks in effective stream order, with the sequence of their message. */
  log: Array<{ seq: number; c: Click }> = [];
  seen = new Set<string>();
  maxTs = -1;
  wm = -1;
  lastBatchWall: number;
  constructor(
    readonly config: ShardActorConfig,
    now: number,
  ) {
    this.lastBatchWall = now;
  }
  get closedThrough(): number {
    return Math.max(-1, Math.floor(this.wm / MINUTE_MS) - 1);
  }
  raise(w: number): void {
    if (w > this.wm) this.wm = w;
  }
  /** Expected result of a (not skipped) batch. */
  batch(seq: number, clicks: readonly Click[], wall: number): BatchResult {
    const res: BatchResult = { skipped: false, counted: 0, duplicates: 0, late: 0, tooOld: [] };
    const closed = this.closedThrough;
    const horizon = this.wm === -1 ? -Infinity : this.wm - this.config.retentionMs;
    for (const c of clicks) {
      if (c.ts < horizon) res.tooOld.push(c);
      else if (this.seen.has(c.click_id)) res.duplicates++;
      else {
        this.seen.add(c.click_id);
        this.log.push({ seq, c });
        res.counted++;
        if (minuteOf(c.ts) <= closed) res.late++;
        if (c.ts > this.maxTs) this.maxTs = c.ts;
      }
    }
    this.raise(this.maxTs - this.config.allowedLatenessMs);
    this.lastBatchWall = wall;
    return res;
  }
  tick(now: number, caughtUp: boolean): void {
    if (caughtUp && now - this.lastBatchWall >= this.config.idleTimeoutMs) {
      this.raise(now - this.config.allowedLatenessMs - this.config.idleTimeoutMs);
    }
  }
  /** Back to the state of a commit at `seq` with watermark `wm` (the crash recovery point). */
  rollback(seq: number, wm: number, now: number): void {
    this.log = this.log.filter((e) => e.seq <= seq);
    this.seen = new Set(this.log.map((e) => e.c.click_id));
    this.maxTs = this.log.reduce((m, e) => Math.max(m, e.c.ts), -1);
    this.wm = wm;
    this.lastBatchWall = now;
  }
  truth(dimensions: readonly string[]): Map<string, number> {
    const out = new Map<string, number>();
    const inc = (k: string) => out.set(k, (out.get(k) ?? 0) + 1);
    for (const { c } of this.log) {
      const m = minuteOf(c.ts);
      inc(fieldKey(m, null, null, c.ad_id));
      for (const d of dimensions) {
        const v = d === 'country' ? c.country : c.attrs?.[d];
        if (v !== undefined) inc(fieldKey(m, d, v, c.ad_id));
      }
    }
    return out;
  }
}

/** Every non-zero field the actor holds in memory (open and closed-unflushed minutes). */
function heldFields(actor: ShardActor, minutes: Iterable<number>, filters: Array<[string, string] | null>): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of minutes) {
    for (const f of filters) {
      const r = actor.queryTop({ fromMinute: m, toMinute: m + 1, dim: f?.[0], value: f?.[1] });
      if (!r.covered.includes(m)) continue;
      for (const [ad, n] of Object.entries(flatToObj(r.counts))) out.set(fieldKey(m, f?.[0] ?? null, f?.[1] ?? null, ad), n);
    }
  }
  return out;
}

function diff(actual: ReadonlyMap<string, number>, expected: ReadonlyMap<string, number>): string[] {
  const out: string[] = [];
  for (const [k, v] of expected) if (actual.get(k) !== v) out.push(`${k}: expected ${v}, got ${actual.get(k)}`);
  for (const [k, v] of actual) if (!expected.has(k) && v !== 0) out.push(`${k}: expected nothing, got ${v}`);
  return out;
}

async function randomizedRun(seed: number, totalClicks: number) {
  const config: ShardActorConfig = { ...CONFIG, dimensions: ['country', 'device'] };
  const { batches, ops, r } = generate(seed, totalClicks);
  const sim = new Sim(config, T0);
  const model = new Model(config, sim.clock.now());
  const commitWm = new Map<number, number>(); // committed seq -> model watermark at that commit
  let applied = -1; // index of the last batch applied in this incarnation
  const stats = { counted: 0, duplicates: 0, late: 0, tooOld: 0, skipped: 0, corrections: 0, idleAdvances: 0 };
  const mismatches: string[] = [];

  const check = (where: string) => {
    const a = sim.actor;
    if (a.watermark !== model.wm || a.closedThrough !== model.closedThrough) {
      mismatches.push(`${where}: watermark/closedThrough ${a.watermark}/${a.closedThrough}, model ${model.wm}/${model.closedThrough}`);
    }
  };
  const commit = (force = false) => {
    const wm = model.wm;
    const c = sim.commit(force);
    if (c) {
      if (c.watermark !== wm) mismatches.push(`commit seq ${c.seq}: watermark ${c.watermark}, model ${wm}`);
      commitWm.set(c.seq, wm);
      stats.corrections += sim.store.readCalls.length;
      sim.store.readCalls.length = 0;
    }
  };
  const applyBatch = async (i: number, where: string) => {
    const b = batches[i]!;
    sim.clock.set(Math.max(sim.clock.now(), b.at));
    const expected = model.batch(b.seq, b.clicks, sim.clock.now());
    const got = await sim.apply(b.seq, b.clicks);
    if (got.skipped) mismatches.push(`${where}: batch seq ${b.seq} skipped`);
    if (
      got.counted !== expected.counted ||
      got.duplicates !== expected.duplicates ||
      got.late !== expected.late ||
      got.tooOld.length !== expected.tooOld.length ||
      got.tooOld.some((c, j) => c !== expected.tooOld[j])
    ) {
      mismatches.push(
        `${where}: batch seq ${b.seq}: got counted ${got.counted} dup ${got.duplicates} late ${got.late} tooOld ${got.tooOld.length}, ` +
          `model ${expected.counted}/${expected.duplicates}/${expected.late}/${expected.tooOld.length}`,
      );
    }
    stats.counted += got.counted;
    stats.duplicates += got.duplicates;
    stats.late += got.late;
    stats.tooOld += got.tooOld.length;
    applied = i;
    check(where);
  };
  const runOp = async (op: Op, where: string) => {
    switch (op.k) {
      case 'batch':
        await applyBatch(op.i, where);
        break;
      case 'redeliver': {
        const b = batches[op.i]!;
        if (op.i > applied) break; // not delivered yet: nothing to redeliver
        const lastSeq = sim.actor.lastSeq;
        const got = await sim.apply(b.seq, b.clicks);
        if (!got.skipped || sim.actor.lastSeq !== lastSeq) mismatches.push(`${where}: redelivered seq ${b.seq} was applied`);
        stats.skipped++;
        break;
      }
      case 'tick': {
        sim.clock.set(Math.max(sim.clock.now(), op.at));
        const before = model.wm;
        model.tick(sim.clock.now(), op.caughtUp);
        if (model.wm > before) stats.idleAdvances++;
        const closed = sim.actor.tick(op.caughtUp);
        check(where);
        if (closed) commit(); // the host commits whenever a tick closed minutes
        break;
      }
      case 'commit':
        commit();
        break;
    }
  };

  // Crash somewhere after the middle, at a point where uncommitted work exists.
  let crashAt = Math.floor(ops.length / 2) + Math.floor(r() * (ops.length / 4));
  for (let o = 0; o < crashAt; o++) await runOp(ops[o]!, `op ${o}`);
  while (sim.actor.lastSeq === sim.store.seq && crashAt < ops.length) await runOp(ops[crashAt]!, `op ${crashAt++}`);

  // Crash: in-memory state is lost; the store keeps what was committed. Restore and replay the
  // messages after the committed sequence (redelivering some committed ones too, like JetStream).
  const committedSeq = sim.store.seq;
  expect(sim.store.commits).toBeGreaterThan(3);
  expect(committedSeq).toBeLessThan(sim.actor.lastSeq); // the crash loses uncommitted work
  await sim.crash();
  expect(sim.actor.lastSeq).toBe(committedSeq);
  model.rollback(committedSeq, commitWm.get(committedSeq)!, sim.clock.now());
  check('after restore');
  const crashedAt = applied;
  for (let i = 0; i <= crashedAt; i++) {
    const b = batches[i]!;
    if (b.seq <= committedSeq) {
      if (i > crashedAt - 20) {
        const got = await sim.apply(b.seq, b.clicks);
        if (!got.skipped) mismatches.push(`replay: committed seq ${b.seq} was applied again`);
      }
      continue;
    }
    await applyBatch(i, `replay batch ${i}`);
    if (r() < 0.2) {
      sim.actor.tick(false); // still catching up
      check(`replay tick ${i}`);
    }
    if (r() < 0.05) commit();
  }
  for (let o = crashAt; o < ops.length; o++) await runOp(ops[o]!, `op ${o}`);
  commit(true);

  expect(mismatches.slice(0, 10)).toEqual([]);

  // The final counts: the store plus what the actor still holds open, field by field.
  const truth = model.truth(config.dimensions);
  const minutes = new Set<number>();
  const filters: Array<[string, string] | null> = [null];
  for (const k of truth.keys()) {
    const [m, d, v] = k.split('|');
    minutes.add(Number(m));
    if (d) filters.push([d, v!]);
  }
  const uniqFilters = [null, ...[...new Set(filters.filter((f) => f).map((f) => f!.join('|')))].map((s) => s.split('|') as [string, string])];
  const held = heldFields(sim.actor, minutes, uniqFilters);
  // Open minutes are persisted in place: after the forced commit the store holds the same values.
  for (const [k, v] of held) expect(sim.store.fields.get(k), `field ${k} held open but stored differently`).toBe(v);
  const combined = new Map([...sim.store.fields, ...held]);
  expect(diff(combined, truth).slice(0, 20)).toEqual([]);
  expect(sim.actor.status().pendingClosedMinutes).toBe(0);

  // Closing everything by idle advance leaves the complete truth in the store alone.
  sim.clock.advance(3600_000);
  sim.actor.tick(true);
  commit();
  expect(sim.actor.status().openMinutes).toBe(0);
  expect(diff(sim.store.fields, truth).slice(0, 20)).toEqual([]);

  return { stats, truth, committedSeq, clicks: batches.reduce((s, b) => s + b.clicks.length, 0) };
}

describe('ShardActor: randomized exactness against a plain-Map truth', () => {
  it('20k clicks with duplicates, late clicks, replays, idle ticks and a crash count each click_id exactly once', async () => {
    const { stats, truth, clicks } = await randomizedRun(20240709, 20_000);
    expect(clicks).toBeGreaterThanOrEqual(20_000);
    // The run must actually exercise every path it claims to.
    expect(stats.duplicates).toBeGreaterThan(500);
    expect(stats.late).toBeGreaterThan(300);
    expect(stats.tooOld).toBeGreaterThan(50);
    expect(stats.skipped).toBeGreaterThan(5);
    expect(stats.corrections).toBeGreaterThan(20);
    expect(stats.idleAdvances).toBeGreaterThan(0);
    const total = [...truth].filter(([k]) => k.split('|')[1] === '').reduce((s, [, n]) => s + n, 0);
    expect(total).toBeGreaterThan(15_000);
  }, 60_000);

  it.each([1, 2, 3])('seed %i, 4k clicks', async (seed) => {
    await randomizedRun(seed, 4_000);
  }, 60_000);
});
