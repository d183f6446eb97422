import { AdaggError, ErrorCode } from '../../errors.ts';
import { decodeBatch, encodeBatch } from '../../model/batch-codec.ts';
import type { Click } from '../../model/click.ts';
import { childOf, type HotControl } from '../../model/hot-messages.ts';
import type { HotForward, HotSeenReply, HotSplitStatus, RetiredSplit, SplitView } from '../../model/hot-report.ts';
import type { StateOp, StateReader } from '../../model/shard-state.ts';
import { absPart, bufferPart, fieldKey, frame, unframe, type ReportDelta, type SplitRecord } from './hot-parts.ts';

/**
 * Hot-ad splitting, the state a shard actor keeps for it (the handlers live in hot-handlers.ts; the
 * views the runtime sees and the report codec in model/hot-report.ts).
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

export class HotState {
  private readonly splits = new Map<string, SplitRecord>();
  private retiredSplits: RetiredSplit[] = [];
  /** Splits retired since the last commit: their parts are deleted by it. */
  private retiredGens: number[] = [];
  /** Child only: the end marker was applied. */
  private ended = false;

  /** Child only: its end marker was applied (every later click goes back to the parent). */
  get childEnded(): boolean {
    return this.ended;
  }

  /** Child only: applies its end marker; false when it was applied before. */
  endChild(): boolean {
    if (this.ended) return false;
    this.ended = true;
    return true;
  }

  /** The splits as the runtime's hooks see them (copies). */
  views(): SplitView[] {
    return [...this.splits.values()].map((r) => ({ ad: r.ad, gen: r.gen, children: r.children, state: r.state }));
  }

  /** Retired splits whose routes and units the host has not removed yet (a copy). */
  retired(): RetiredSplit[] {
    return [...this.retiredSplits];
  }

  /** The clicks a draining split buffers (a copy; diagnostics and tests). */
  buffered(ad: string): Click[] {
    return [...(this.splits.get(ad)?.buffer ?? [])];
  }

  /** Whether any ad's clicks are diverted (fast check per batch). */
  get diverting(): boolean {
    return this.splits.size > 0;
  }

  diverts(adId: string): boolean {
    return this.splits.has(adId);
  }

  isEmpty(): boolean {
    return this.splits.size === 0 && this.retiredSplits.length === 0 && !this.ended;
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

  /** See ShardQueries.hotSeen (runtime/shard-behaviour.ts); `dedup` is the parent's table (shard-dedup.ts). */
  seen(ad: string, gen: number, hashes: readonly number[], dedup: { hasHashed(h: number, l: number): boolean }): HotSeenReply | null {
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
    return true;
  }

  unsplit(ad: string): SplitRecord | undefined {
    const r = this.splits.get(ad);
    if (!r || r.state !== 'split') return undefined;
    r.state = 'draining';
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
      const kk = fieldKey(rep.k, minute, dim, value);
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
      const kk = fieldKey(rep.k, minute, dim, value);
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
    this.retiredSplits.push({ ad: rec.ad, gen: rec.gen, children: rec.children });
    return rec.buffer;
  }

  /** The host removed a retired split's routes and units. */
  dropRetired(ad: string, gen: number): void {
    this.retiredSplits = this.retiredSplits.filter((r) => r.ad !== ad || r.gen !== gen);
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
    return [splits, this.retiredSplits.map((r) => [r.ad, r.gen, r.children]), this.ended ? 1 : 0];
  }

  /** Inverse of encodeHead, reading each split's parts. */
  static async restore(doc: unknown, reader: StateReader): Promise<HotState> {
    const h = new HotState();
    let splits: unknown[][];
    try {
      const [s, retired, ended] = doc as [unknown[][], Array<[string, number, number]>, number];
      splits = s;
      h.retiredSplits = retired.map(([ad, gen, children]) => ({ ad, gen, children }));
      h.ended = ended === 1;
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
          lastAbs.set(fieldKey(abs[i] as number, abs[i + 1] as number, abs[i + 2] as string | null, abs[i + 3] as string | null), abs[i + 4] as number);
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
      h.retiredSplits = retired.map(([ad, gen, children]) => ({ ad, gen, children }));
      h.ended = ended === 1;
    } catch (err) {
      throw new AdaggError(ErrorCode.SnapshotCorrupt, 'snapshot hot-split state is malformed', { cause: err });
    }
    h.markAllChanged();
    return h;
  }
}
