import { AdaggError, ErrorCode } from '../../errors.ts';
import type { BatchResult } from '../shard-actor.ts';
import type { ClickDedup } from './click-dedup.ts';
import { decodeBatch, encodeBatch } from '../../model/batch-codec.ts';
import type { Click } from '../../model/click.ts';
import { childOf, ID_BYTES, type HotControl, type ReportRow } from '../../model/hot-messages.ts';
import type { StateOp, StateReader } from '../../model/shard-state.ts';

/**
 * Hot-ad splitting, the state a shard actor keeps for it (the handlers live in shard-actor.ts).
 *
 * Parent side (an ordinary shard), per split ad:
 * - `split` at stream sequence S (= the split's `gen`): the ad's clicks that still arrive on the
 *   parent's subject are deduped against the parent's table (a copy of a click counted before S
 *   is dropped there) and forwarded, not counted, to child `childOf(click_id, K)`. Forwarded ids are
 *   NOT added to the parent's table: the table's content for the ad stays what the parent counted
 *   before S, which is what children ask about (`seen`), and that answer never changes.
 * - child reports: absolute per (child, minute, field) values; the parent adds the difference to
 *   the last value it holds into the window the minute lives in, so a replay adds 0.
 * - minute closing is capped at the children's reported closedThrough.
 * - `unsplit` at U: the split is `draining`: children get an `end` marker, close all their minutes
 *   and send a final report with their dedupe ids; until every final report is applied the parent
 *   buffers the ad's clicks (deduped against its table, not recorded), then adds the children's
 *   ids to its table and counts the buffer. A child counted click is thus never counted again.
 *
 * Child side: `ended` once it applied its `end` marker; from then on it hands every click back to
 * the parent (whose table then holds the child's ids).
 */

export interface SplitRecord {
  ad: string;
  /** The parent stream sequence of the split message. */
  gen: number;
  children: number;
  state: 'split' | 'draining';
  /** The parent's closedThrough when it applied the split: the cap never goes below it. */
  closedAtSplit: number;
  /**
   * The parent's highest counted event time when it applied the split: every click it counted
   * before the split has ts <= this, so children only ask about clicks at or below it.
   */
  maxTsAtSplit: number;
  /** Per child: the closedThrough of its last report (-1: none yet; Infinity: final). */
  childClosed: number[];
  /** Per child: indexes of final-report parts applied, and how many there are (0: none seen). */
  finalParts: Array<{ parts: number; got: number[] }>;
  /** Last absolute value per `k|minute|dim|value`. */
  lastAbs: Map<string, number>;
  /** Draining: the ad's clicks that arrived on the parent after U, counted once every child is final. */
  buffer: Click[];
  /** Persistence: lastAbs keys set / removed, and buffered clicks, since the last commit. */
  changedAbs: Set<string>;
  removedAbs: Set<string>;
  bufferNew: Click[];
}

/** What applying a control message did; the host acts on it (routes, units, markers, reports). */
export interface ControlResult {
  skipped: boolean;
  /** The hot state changed in a way the host must act on. */
  changed: boolean;
  /** A split ended: its buffered clicks were counted (dead letters for the too-old ones). */
  batch?: BatchResult;
  /** Report: clicks the delta added to the parent's counts (for the hot-ad detector). */
  reported?: { ad: string; clicks: number };
}

/** A split as the parent sees it (status, `adagg split --wait`, tests). childClosed -2: final. */
export interface HotSplitStatus {
  ad: string;
  gen: number;
  children: number;
  state: 'split' | 'draining';
  childClosed: number[];
  buffered: number;
}

/** A completed split whose side effects (routes, placement units) the host still has to remove. */
export interface RetiredSplit {
  ad: string;
  gen: number;
  children: number;
}

/** Where the parent sends clicks of a split ad instead of counting them. */
export type HotForward =
  | { to: 'child'; ad: string; gen: number; k: number; clicks: Click[] }
  | { to: 'parent'; clicks: Click[] };

/** A delta the parent adds to one field of one minute from a child's report. */
export interface ReportDelta {
  minute: number;
  dim: string | null;
  value: string | null;
  delta: number;
}

/** Identity of a child actor (config). */
export interface HotChildSpec {
  parent: number;
  ad: string;
  gen: number;
  k: number;
}

const key = (k: number, minute: number, dim: string | null, value: string | null): string =>
  `${k}\u0000${minute}\u0000${dim ?? ''}\u0000${value ?? ''}`;

const absPart = (gen: number): string => `ha${gen}`;
const bufferPart = (gen: number): string => `hb${gen}`;

/** A length-prefixed chunk of a log part (u32 little-endian length, then the bytes). */
function frame(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + bytes.byteLength);
  new DataView(out.buffer).setUint32(0, bytes.byteLength, true);
  out.set(bytes, 4);
  return out;
}

function unframe(log: Uint8Array): Click[] {
  const out: Click[] = [];
  const dv = new DataView(log.buffer, log.byteOffset, log.byteLength);
  for (let o = 0; o < log.byteLength; ) {
    if (o + 4 > log.byteLength) throw new Error('truncated frame');
    const n = dv.getUint32(o, true);
    if (o + 4 + n > log.byteLength) throw new Error('truncated frame');
    for (const c of decodeBatch(log.subarray(o + 4, o + 4 + n))) out.push(c);
    o += 4 + n;
  }
  return out;
}

export class HotState {
  readonly splits = new Map<string, SplitRecord>();
  retired: RetiredSplit[] = [];
  /** Splits retired since the last commit: their parts are deleted by it. */
  private retiredGens: number[] = [];
  /** Child only: the end marker was applied. */
  childEnded = false;
  /** Bumped by every change the host must act on (routes, units, end markers). */
  version = 0;

  /** Whether any ad's clicks are diverted (fast check per batch). */
  get diverting(): boolean {
    return this.splits.size > 0;
  }

  diverts(adId: string): boolean {
    return this.splits.has(adId);
  }

  isEmpty(): boolean {
    return this.splits.size === 0 && this.retired.length === 0 && !this.childEnded;
  }

  /** The highest minute the parent may close: the slowest child's, never below what was closed at the split. */
  closeCap(): number {
    let cap = Infinity;
    for (const r of this.splits.values()) {
      let min = Infinity;
      for (const c of r.childClosed) if (c < min) min = c;
      cap = Math.min(cap, Math.max(r.closedAtSplit, min));
    }
    return cap;
  }

  /** See ShardActor.hotSeen. */
  seen(ad: string, gen: number, hashes: readonly number[], dedup: ClickDedup): { seen: boolean[]; maxTs: number } | null {
    const rec = this.splits.get(ad);
    if (rec?.gen !== gen) return null;
    const seen: boolean[] = new Array(hashes.length >> 1);
    for (let i = 0; i + 1 < hashes.length; i += 2) seen[i >> 1] = dedup.hasHashed(hashes[i]!, hashes[i + 1]!);
    return { seen, maxTs: rec.maxTsAtSplit };
  }

  status(): HotSplitStatus[] {
    return [...this.splits.values()].map((r) => ({
      ad: r.ad,
      gen: r.gen,
      children: r.children,
      state: r.state,
      childClosed: r.childClosed.map((c) => (c === Infinity ? -2 : c)),
      buffered: r.buffer.length,
    }));
  }

  /** Applies a split; false when the ad is already split (or draining): the message is a no-op. */
  split(ad: string, children: number, gen: number, closedThrough: number, maxEventTs: number): boolean {
    if (this.splits.has(ad)) return false;
    this.splits.set(ad, {
      ad,
      gen,
      children,
      state: 'split',
      closedAtSplit: closedThrough,
      maxTsAtSplit: maxEventTs,
      childClosed: new Array<number>(children).fill(-1),
      finalParts: Array.from({ length: children }, () => ({ parts: 0, got: [] })),
      lastAbs: new Map(),
      buffer: [],
      changedAbs: new Set(),
      removedAbs: new Set(),
      bufferNew: [],
    });
    this.version++;
    return true;
  }

  unsplit(ad: string): SplitRecord | undefined {
    const r = this.splits.get(ad);
    if (!r || r.state !== 'split') return undefined;
    r.state = 'draining';
    this.version++;
    return r;
  }

  /**
   * Routes diverted clicks (already deduped against the parent's table and within their batch):
   * forwarded to their child while split, buffered while draining.
   */
  divert(clicks: readonly Click[]): HotForward[] {
    const out = new Map<string, HotForward & { to: 'child' }>();
    for (const c of clicks) {
      const r = this.splits.get(c.ad_id)!;
      if (r.state === 'draining') {
        r.buffer.push(c);
        r.bufferNew.push(c);
        continue;
      }
      const k = childOf(c.click_id, r.children);
      const id = `${r.gen}/${k}`;
      let f = out.get(id);
      if (!f) out.set(id, (f = { to: 'child', ad: r.ad, gen: r.gen, k, clicks: [] }));
      f.clicks.push(c);
    }
    return [...out.values()];
  }

  /** The record a report applies to, or undefined when it is stale (an older or finished split). */
  recordFor(r: { ad: string; gen: number; k: number }): SplitRecord | undefined {
    const rec = this.splits.get(r.ad);
    return rec && rec.gen === r.gen && r.k >= 0 && r.k < rec.children ? rec : undefined;
  }

  /** Deltas of a report against the last absolute values held (pure: `acceptReport` records them). */
  reportDeltas(rec: SplitRecord, rep: Extract<HotControl, { kind: 'report' }>): ReportDelta[] {
    const out: ReportDelta[] = [];
    const seen = new Set<string>();
    for (const [minute, dim, value, n] of rep.rows) {
      const kk = key(rep.k, minute, dim, value);
      if (seen.has(kk)) continue;
      seen.add(kk);
      const delta = n - (rec.lastAbs.get(kk) ?? 0);
      if (delta !== 0) out.push({ minute, dim, value, delta });
    }
    return out;
  }

  /**
   * Records an applied report: its absolute values, the child's closedThrough, final parts.
   * Returns the dedupe entries it carries and whether every child is now final (the split is over).
   */
  acceptReport(rec: SplitRecord, rep: Extract<HotControl, { kind: 'report' }>): { ids: Uint8Array | undefined; complete: boolean } {
    for (const [minute, dim, value, n] of rep.rows) {
      const kk = key(rep.k, minute, dim, value);
      if (rec.lastAbs.get(kk) === n) continue;
      rec.lastAbs.set(kk, n);
      rec.changedAbs.add(kk);
      rec.removedAbs.delete(kk);
    }
    const fp = rec.finalParts[rep.k]!;
    if (rep.final) {
      fp.parts = rep.parts;
      if (!fp.got.includes(rep.part)) fp.got.push(rep.part);
      if (fp.got.length >= fp.parts) rec.childClosed[rep.k] = Infinity;
    } else if (rec.childClosed[rep.k]! !== Infinity) {
      rec.childClosed[rep.k] = Math.max(rec.childClosed[rep.k]!, rep.closedThrough);
    }
    const complete = rec.state === 'draining' && rec.childClosed.every((c) => c === Infinity);
    return { ids: rep.final ? rep.ids : undefined, complete };
  }

  /** Ends a split whose children are all final; returns its buffered clicks (to be counted now). */
  retire(rec: SplitRecord): Click[] {
    this.splits.delete(rec.ad);
    this.retiredGens.push(rec.gen);
    this.retired.push({ ad: rec.ad, gen: rec.gen, children: rec.children });
    this.version++;
    return rec.buffer;
  }

  /** The host removed a retired split's routes and units. */
  dropRetired(ad: string, gen: number): void {
    this.retired = this.retired.filter((r) => r.ad !== ad || r.gen !== gen);
  }

  /** Forgets report values of minutes no child can change any more (behind the horizon). */
  expireBefore(minute: number): void {
    for (const r of this.splits.values()) {
      for (const k of r.lastAbs.keys()) {
        const m = Number(k.split('\u0000', 2)[1]);
        if (m < minute) {
          r.lastAbs.delete(k);
          r.changedAbs.delete(k);
          r.removedAbs.add(k);
        }
      }
    }
  }

  /**
   * Changes to persist since the last call: per split, its report values (a hash part `ha<gen>`)
   * and its draining buffer (a log part `hb<gen>` of length-prefixed click batches); the parts of
   * retired splits are deleted. Records' other fields are small and live in the head.
   */
  takeChanges(): StateOp[] {
    const ops: StateOp[] = [];
    for (const gen of this.retiredGens) ops.push({ kind: 'del', part: absPart(gen) }, { kind: 'del', part: bufferPart(gen) });
    this.retiredGens = [];
    for (const r of this.splits.values()) {
      if (r.removedAbs.size > 0) ops.push({ kind: 'hdel', part: absPart(r.gen), fields: [...r.removedAbs] });
      if (r.changedAbs.size > 0) {
        const fields: Array<string | number> = [];
        for (const k of r.changedAbs) fields.push(k, r.lastAbs.get(k)!);
        ops.push({ kind: 'hset', part: absPart(r.gen), fields });
      }
      if (r.bufferNew.length > 0) ops.push({ kind: 'append', part: bufferPart(r.gen), bytes: frame(encodeBatch(r.bufferNew)) });
      r.changedAbs = new Set();
      r.removedAbs = new Set();
      r.bufferNew = [];
    }
    return ops;
  }

  /** Marks the whole state as changed (restored from a legacy snapshot: written out once). */
  markAllChanged(): void {
    for (const r of this.splits.values()) {
      r.changedAbs = new Set(r.lastAbs.keys());
      r.bufferNew = [...r.buffer];
    }
  }

  /** The head's part of the hot state: everything but report values and buffers (those are parts). */
  encodeHead(): unknown[] {
    const splits = [...this.splits.values()].map((r) => [
      r.ad,
      r.gen,
      r.children,
      r.state === 'split' ? 0 : 1,
      r.closedAtSplit,
      r.childClosed,
      r.finalParts.map((f) => [f.parts, f.got]),
      r.maxTsAtSplit,
    ]);
    return [splits, this.retired.map((r) => [r.ad, r.gen, r.children]), this.childEnded ? 1 : 0];
  }

  /** Inverse of encodeHead, reading each split's parts. */
  static async restore(doc: unknown, reader: StateReader): Promise<HotState> {
    const h = new HotState();
    let splits: unknown[][];
    try {
      const [s, retired, ended] = doc as [unknown[][], Array<[string, number, number]>, number];
      splits = s;
      h.retired = retired.map(([ad, gen, children]) => ({ ad, gen, children }));
      h.childEnded = ended === 1;
    } catch (err) {
      throw new AdaggError(ErrorCode.SnapshotCorrupt, 'state head: hot-split state is malformed', { cause: err });
    }
    const gens = splits.map((x) => x[1] as number);
    const [abs, buffers] = await Promise.all([reader.hashes(gens.map(absPart)), reader.logs(gens.map(bufferPart))]);
    try {
      splits.forEach((x, i) => {
        const [ad, gen, children, state, closedAtSplit, childClosed, finalParts, maxTsAtSplit] = x as [
          string, number, number, number, number, number[], Array<[number, number[]]>, number,
        ];
        if (typeof ad !== 'string' || childClosed.length !== children || finalParts.length !== children) throw new Error('split record');
        const lastAbs = new Map<string, number>();
        for (const [k, v] of abs[i] ?? []) lastAbs.set(k, Number(v));
        const buffer = unframe(buffers[i] ?? new Uint8Array(0));
        h.splits.set(ad, {
          ad, gen, children,
          state: state === 0 ? 'split' : 'draining',
          closedAtSplit,
          maxTsAtSplit,
          childClosed: [...childClosed],
          finalParts: finalParts.map(([parts, got]) => ({ parts, got: [...got] })),
          lastAbs,
          buffer,
          changedAbs: new Set(),
          removedAbs: new Set(),
          bufferNew: [],
        });
      });
    } catch (err) {
      throw new AdaggError(ErrorCode.SnapshotCorrupt, 'state: hot-split parts are malformed', { cause: err });
    }
    return h;
  }

  /** Decodes the hot state of a legacy (v2) whole-state snapshot; everything is marked changed. */
  static decodeLegacy(doc: unknown): HotState {
    const h = new HotState();
    try {
      const [splits, retired, ended] = doc as [unknown[][], Array<[string, number, number]>, number];
      for (const s of splits) {
        const [ad, gen, children, state, closedAtSplit, childClosed, finalParts, abs, buffer, maxTsAtSplit] = s as [
          string, number, number, number, number, number[], Array<[number, number[]]>, Array<string | number | null>, Uint8Array, number,
        ];
        const lastAbs = new Map<string, number>();
        for (let i = 0; i + 4 < abs.length; i += 5) {
          lastAbs.set(key(abs[i] as number, abs[i + 1] as number, abs[i + 2] as string | null, abs[i + 3] as string | null), abs[i + 4] as number);
        }
        if (typeof ad !== 'string' || childClosed.length !== children || finalParts.length !== children) throw new Error('split record');
        h.splits.set(ad, {
          ad,
          gen,
          children,
          state: state === 0 ? 'split' : 'draining',
          closedAtSplit,
          maxTsAtSplit: typeof maxTsAtSplit === 'number' ? maxTsAtSplit : Number.MAX_SAFE_INTEGER,
          childClosed: [...childClosed],
          finalParts: finalParts.map(([parts, got]) => ({ parts, got: [...got] })),
          lastAbs,
          buffer: decodeBatch(buffer),
          changedAbs: new Set(),
          removedAbs: new Set(),
          bufferNew: [],
        });
      }
      h.retired = retired.map(([ad, gen, children]) => ({ ad, gen, children }));
      h.childEnded = ended === 1;
    } catch (err) {
      throw new AdaggError(ErrorCode.SnapshotCorrupt, 'snapshot hot-split state is malformed', { cause: err });
    }
    h.markAllChanged();
    return h;
  }
}

/** Rows of a child's report: every field of its one ad in the given minute counts. */
export function reportRows(
  adId: string,
  minutes: Iterable<{ minute: number; dim: string | null; value: string | null; counts: ReadonlyArray<string | number> }>,
): ReportRow[] {
  const rows: ReportRow[] = [];
  for (const w of minutes) {
    for (let i = 0; i + 1 < w.counts.length; i += 2) {
      if (w.counts[i] === adId) rows.push([w.minute, w.dim, w.value, w.counts[i + 1] as number]);
    }
  }
  return rows;
}

/** Splits a ClickDedup.toBytes() image into entry chunks for final reports (at least one, maybe empty). */
export function idChunks(dedupBytes: Uint8Array, perPart: number): Uint8Array[] {
  const body = dedupBytes.subarray(4);
  const step = perPart * ID_BYTES;
  const out: Uint8Array[] = [];
  for (let o = 0; o < body.byteLength; o += step) out.push(body.slice(o, Math.min(body.byteLength, o + step)));
  if (out.length === 0) out.push(new Uint8Array(0));
  return out;
}
