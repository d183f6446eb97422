import { describe, expect, it } from 'vitest';
import { ShardActor } from '../../src/actors/shard-actor.ts';
import { fnv1a32Utf16, murmur3_32 } from '../../src/actors/shard/click-hash.ts';
import { ClickDedup } from '../../src/actors/shard/click-dedup.ts';
import { ShardDedup } from '../../src/actors/shard/shard-dedup.ts';
import { randomDedupKey } from '../../src/actors/shard/siphash.ts';
import { ErrorCode } from '../../src/errors.ts';
import type { Click } from '../../src/model/click.ts';
import { decode, encode } from '../../src/model/msgpack.ts';
import type { ShardActorConfig } from '../../src/model/shard-config.ts';
import { MINUTE_MS, minuteOf } from '../../src/model/time.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { rng } from '../helpers/click-stream.ts';
import { MemoryState } from '../helpers/memory-state.ts';

// The keyed dedupe's state format (head 4) and the migration from the unkeyed one (head 3), on a
// shard actor over an in-memory store that applies commits as the Redis store does.

const T0 = Date.UTC(2024, 6, 9, 0, 0, 0);
const M0 = minuteOf(T0);
const at = (minute: number, sec = 0): number => T0 + minute * MINUTE_MS + sec * 1000;
const KEY = randomDedupKey();
const CONFIG: ShardActorConfig = { shard: 3, dimensions: [], allowedLatenessMs: 10_000, idleTimeoutMs: 5_000, retentionMs: 5 * MINUTE_MS, dedupKey: KEY };
const click = (id: string, ts: number): Click => ({ click_id: id, ad_id: 'a1', ts });

class Sim {
  readonly clock = new ManualClock(T0);
  readonly store = new MemoryState();
  actor: ShardActor;
  constructor(readonly config: ShardActorConfig = CONFIG) {
    this.actor = new ShardActor(config, this.ports());
  }
  ports() {
    return { clock: this.clock, readClosed: this.store.readClosed };
  }
  commit(): void {
    const c = this.actor.prepareCommit(this.store.seq, true)!;
    this.store.apply(c);
    this.actor.committed(c);
  }
  async restore(config = this.config): Promise<void> {
    this.actor = await ShardActor.restore(this.store.head!, this.store.reader(), config, this.ports());
  }
  headDoc(): unknown[] {
    return decode(this.store.head!) as unknown[];
  }
  dedupParts(): string[] {
    return [...this.store.logs.keys()].filter((k) => /^[dk]\d/.test(k)).sort();
  }
}

/** Unkeyed 8-byte records (u32 fnv1a32Utf16, u32 murmur3_32), as the previous release appended them. */
function legacyRecords(ids: string[]): Uint8Array {
  const out = new Uint8Array(8 * ids.length), dv = new DataView(out.buffer);
  ids.forEach((id, i) => {
    dv.setUint32(8 * i, fnv1a32Utf16(id), true);
    dv.setUint32(8 * i + 4, murmur3_32(id), true);
  });
  return out;
}

/** A format-3 state as the previous release committed it: ids c1 (minute 0), c2 and c3 (minute 3). */
function formatThreeState(sim: Sim): void {
  sim.store.logs.set(`d${M0}`, legacyRecords(['c1']));
  sim.store.logs.set(`d${M0 + 3}`, legacyRecords(['c2', 'c3']));
  // [3, shard, lastSeq, maxEventTs, watermark, closedThrough, expiredBeforeMinute, bucketMinutes, open, blocks, hot]
  sim.store.head = encode([3, 3, 9, at(3, 30), at(3, 20), M0 + 2, -1, 1, [], [M0, M0 + 3], null]);
  sim.store.seq = 9;
}

describe('keyed dedupe: migration from the unkeyed format 3', () => {
  it('restores a format-3 state exactly, keeps deduping its ids, records new ones keyed, and drops the legacy blocks after the horizon', async () => {
    const sim = new Sim();
    formatThreeState(sim);
    await sim.restore();
    expect(sim.actor.status()).toMatchObject({ lastSeq: 9, closedThrough: M0 + 2, trackedIds: 3 });

    // Old ids are duplicates (found with the legacy hash); a new one is counted.
    let res = await sim.actor.applyBatch(10, [click('c1', at(0, 1)), click('c3', at(3, 1)), click('c4', at(3, 2))]);
    expect(res).toMatchObject({ counted: 1, duplicates: 2 });
    sim.commit();
    const head = sim.headDoc();
    expect(head[0]).toBe(4);
    expect(head[12]).toEqual([M0, M0 + 3]); // legacy blocks, still inside the horizon
    expect(head[9]).toEqual([M0, M0 + 3]); // keyed blocks: c1 and c3 re-sighted, c4 new
    expect(sim.dedupParts()).toEqual([`d${M0}`, `d${M0 + 3}`, `k${M0}`, `k${M0 + 3}`]);

    // After a restart both tables are back: every id seen so far is a duplicate.
    await sim.restore();
    res = await sim.actor.applyBatch(11, [click('c2', at(3, 5)), click('c4', at(3, 6)), click('c1', at(3, 7)), click('c5', at(3, 8))]);
    expect(res).toMatchObject({ counted: 1, duplicates: 3 });
    expect(sim.actor.queryAd({ adId: 'a1', fromMinute: M0, toMinute: M0 + 4 }).minutes).toEqual([[M0 + 3, 2]]);

    // The horizon passes: the legacy blocks are deleted with the keyed ones of those minutes.
    await sim.actor.applyBatch(12, [click('late', at(20))]);
    sim.actor.tick(false);
    sim.commit();
    expect(sim.dedupParts()).toEqual([`k${M0 + 20}`]);
    expect(sim.headDoc()[12]).toEqual([]);
    await sim.restore();
    expect(sim.actor.status().trackedIds).toBe(1);
    expect(await sim.actor.applyBatch(13, [click('late', at(20, 1)), click('c6', at(20, 2))])).toMatchObject({ counted: 1, duplicates: 1 });
  });

  it('stops computing the legacy hash once the horizon has dropped the last legacy block', () => {
    const legacy = ClickDedup.fromBlocks([{ block: 100, bytes: legacyRecords(['old']) }]);
    const d = new ShardDedup(KEY, new ClickDedup(), legacy);
    expect(d.migrating).toBe(true);
    expect(d.check('old')).toBe(true);
    d.expireBefore(101);
    expect(d.takeChanges()).toEqual([{ kind: 'del', part: 'd100' }]);
    expect(d.migrating).toBe(false);
    expect(d.check('old')).toBe(false);
  });

  it('a format-1 whole-state snapshot migrates its unkeyed ids to legacy blocks', async () => {
    const image = new Uint8Array(4 + 12), dv = new DataView(image.buffer);
    dv.setUint32(0, 1, true);
    dv.setUint32(4, fnv1a32Utf16('c1'), true);
    dv.setUint32(8, murmur3_32('c1'), true);
    dv.setInt32(12, M0 + 1, true);
    const sim = new Sim();
    sim.store.head = encode([1, 3, 9, at(3, 30), at(3, 20), M0 + 2, [], image]);
    sim.store.seq = 9;
    await sim.restore();
    sim.commit();
    expect(sim.dedupParts()).toEqual([`d${M0 + 1}`]);
    await sim.restore();
    expect(await sim.actor.applyBatch(10, [click('c1', at(3, 1)), click('c2', at(3, 2))])).toMatchObject({ counted: 1, duplicates: 1 });
  });

  it('refuses a state written under another dedupe secret (ADAGG_E_SNAPSHOT_CORRUPT), not silently miss every duplicate', async () => {
    const sim = new Sim();
    await sim.actor.applyBatch(1, [click('c1', at(0, 1))]);
    sim.commit();
    await expect(sim.restore({ ...CONFIG, dedupKey: randomDedupKey() })).rejects.toMatchObject({ code: ErrorCode.SnapshotCorrupt });
    await sim.restore();
    expect(await sim.actor.applyBatch(2, [click('c1', at(0, 2))])).toMatchObject({ counted: 0, duplicates: 1 });
  });

  it('a format-4 head is an unknown layout to a release that reads format 3 only', () => {
    // What the previous release's parseHead checked: version 3 and 11 fields.
    const sim = new Sim();
    sim.commit();
    const doc = sim.headDoc();
    expect(doc[0] === 3 && doc.length === 11).toBe(false);
    expect(doc.length).toBe(13);
  });

  it('a hot child restored from a migrated state reports its legacy ids so that its parent keeps deduping them', async () => {
    const child = new Sim({ ...CONFIG, shard: 'hchild' });
    child.store.logs.set(`d${M0}`, legacyRecords(['c1']));
    child.store.head = encode([3, 'hchild', 9, at(3, 30), at(3, 20), M0 + 2, -1, 1, [], [M0], null]);
    child.store.seq = 9;
    await child.restore();
    await child.actor.applyBatch(10, [click('c2', at(3, 1))]);
    const image = child.actor.dedupBytes();
    expect(new DataView(image.buffer, image.byteOffset).getUint32(0, true)).toBe(2);
    // The parent adds the report's entries: the keyed one to its keyed table, the legacy one to a
    // legacy table of its own; both ids are then duplicates there.
    const parent = new ShardDedup(KEY, new ClickDedup());
    const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
    for (let o = 4; o < image.byteLength; o += 12) parent.addReported(dv.getUint32(o, true), dv.getUint32(o + 4, true), dv.getInt32(o + 8, true));
    expect(parent.check('c1')).toBe(true);
    expect(parent.check('c2')).toBe(true);
    expect(parent.check('c3')).toBe(false);
    expect(parent.takeChanges().map((op) => op.part).sort()).toEqual([`d${M0}`, `k${M0 + 3}`]);
  });
});

/**
 * A randomized run from a format-3 state: clicks with repeated ids (old ones of the unkeyed state
 * and new ones), late and too-old clicks, commits at random, expiry ticks and crashes that lose
 * uncommitted work and replay it. Every batch's counted / duplicate / too-old numbers must match a
 * plain model: an id is a duplicate while it was last seen in a minute at or after the expiry floor.
 */
async function migrationRun(seed: number): Promise<{ counted: number; duplicates: number; tooOld: number; crashes: number }> {
  const r = rng(seed);
  const sim = new Sim();
  const retention = CONFIG.retentionMs, lateness = CONFIG.allowedLatenessMs;
  // The previous release's state: 400 ids in minutes 0-3, watermark at 4:00.
  const legacyIds = Array.from({ length: 400 }, (_, i) => `old-${i}`);
  const legacyMinute = (i: number): number => M0 + (i % 4);
  for (let m = 0; m < 4; m++) sim.store.logs.set(`d${M0 + m}`, legacyRecords(legacyIds.filter((_, i) => i % 4 === m)));
  const wm0 = at(4);
  sim.store.head = encode([3, 3, 0, wm0 + lateness, wm0, M0 + 3, -1, 1, [], [M0, M0 + 1, M0 + 2, M0 + 3], null]);
  await sim.restore();

  interface ModelState { seen: Map<string, number>; wm: number; floor: number }
  let model: ModelState = { seen: new Map(legacyIds.map((id, i) => [id, legacyMinute(i)])), wm: wm0, floor: -Infinity };
  const clone = (m: ModelState): ModelState => ({ seen: new Map(m.seen), wm: m.wm, floor: m.floor });
  let committed = { seq: 0, model: clone(model) };
  const batches: Click[][] = [];
  let maxTs = wm0 + lateness, newIds = 0, crashes = 0;
  const totals = { counted: 0, duplicates: 0, tooOld: 0 };

  const expect1 = (clicks: Click[]): { counted: number; duplicates: number; tooOld: number } => {
    const out = { counted: 0, duplicates: 0, tooOld: 0 };
    const oldest = model.wm - retention;
    let top = -Infinity;
    for (const c of clicks) {
      if (c.ts < oldest) {
        out.tooOld++;
        continue;
      }
      const m = minuteOf(c.ts), last = model.seen.get(c.click_id);
      if (last !== undefined && last >= model.floor) out.duplicates++;
      else {
        out.counted++;
        top = Math.max(top, c.ts);
      }
      model.seen.set(c.click_id, Math.max(last !== undefined && last >= model.floor ? last : -Infinity, m));
    }
    if (top - lateness > model.wm) model.wm = top - lateness;
    return out;
  };
  const apply = async (i: number): Promise<void> => {
    const want = expect1(batches[i]!);
    const got = await sim.actor.applyBatch(i + 1, batches[i]!);
    expect({ counted: got.counted, duplicates: got.duplicates, tooOld: got.tooOld.length }, `seed ${seed} batch ${i + 1}`).toEqual(want);
    totals.counted += want.counted;
    totals.duplicates += want.duplicates;
    totals.tooOld += want.tooOld;
  };
  for (let i = 0; i < 300; i++) {
    // Event time moves ~2 s per batch (about 10 minutes in all), with late clicks behind it.
    maxTs += Math.floor(r() * 4000);
    const clicks: Click[] = [];
    for (let j = 1 + Math.floor(r() * 8); j > 0; j--) {
      const x = r();
      const id = x < 0.3 ? legacyIds[Math.floor(r() * legacyIds.length)]! : x < 0.5 && newIds > 0 ? `new-${Math.floor(r() * newIds)}` : `new-${newIds++}`;
      const late = r() < 0.2 ? Math.floor(r() * 7 * MINUTE_MS) : Math.floor(r() * 20_000);
      clicks.push(click(id, Math.max(0, maxTs - late)));
    }
    batches.push(clicks);
    await apply(i);
    if (r() < 0.3) {
      sim.actor.tick(false);
      const floor = minuteOf(model.wm - retention);
      if (floor > model.floor) model.floor = floor;
    }
    if (r() < 0.2) {
      sim.commit();
      committed = { seq: i + 1, model: clone(model) };
    }
    if (r() < 0.02) {
      // A crash: back to the last commit, then the lost batches again.
      crashes++;
      await sim.restore();
      model = clone(committed.model);
      for (let k = committed.seq; k <= i; k++) await apply(k);
    }
  }
  // The horizon passed the unkeyed blocks: after expiry and a commit they are gone.
  sim.actor.tick(false);
  sim.commit();
  expect(sim.dedupParts().filter((p) => p.startsWith('d'))).toEqual([]);
  return { ...totals, crashes };
}

describe('keyed dedupe: randomized migration against a plain model', () => {
  it.each([1, 2, 3, 4])('seed %i', async (seed) => {
    const t = await migrationRun(seed);
    expect(t.duplicates).toBeGreaterThan(50);
    expect(t.tooOld).toBeGreaterThan(5);
    expect(t.counted).toBeGreaterThan(500);
  }, 60_000);
});
