import type { RiskOut } from './risk-messages.ts';

/**
 * The persisted form of a shard actor's state, shared by the actors (which produce and read it)
 * and the runtime's stores (which write it atomically and read it back). Neither side knows the
 * other's internals: the actor names *parts*, the store maps them to keys.
 *
 * A commit is a change set, never a whole image: what it writes is proportional to what changed
 * since the previous commit (docs/exactness.md).
 */

/**
 * What a shard actor's persistence is keyed by: a shard number, or the string id of a hot ad's child
 * unit (`h<adkey>-<gen>-<k>`), which is persisted, fenced and placed like a shard.
 */
export type UnitId = number | string;

/** Flat `[ad_id, count, ad_id, count, ...]` form used in commits, queries and rankings. */
export type FlatCounts = Array<string | number>;

/**
 * Counts of one minute for one filter (`dim`/`value` null = all clicks), as absolute values.
 * Written with idempotent HSETs so a replay after a crash rewrites the same numbers. Minutes after
 * the shard's `closedThrough` hold provisional values (the open windows, persisted in place).
 */
export interface CountWrite {
  minute: number;
  dim: string | null;
  value: string | null;
  counts: FlatCounts;
}

/** A field of a closed minute that a late click needs to correct. */
export interface CountRead {
  minute: number;
  dim: string | null;
  value: string | null;
  adId: string;
}

/** What changed a closed, committed minute (docs/history.md, "Corrections feed"). */
export type CorrectionCause = 'late_click' | 'hot_report' | 'risk_verdict' | 'recompute' | 'backfill';

/**
 * One field of a closed, committed minute that a commit corrects: the value the actor read from
 * the store (`old`) and the value the commit writes (`new`). `cause` is the cause of the last
 * change applied to the field since the previous commit. Carried from the actor to the runtime,
 * which publishes it on the corrections subject before the commit is written.
 */
export interface CountCorrection {
  minute: number;
  adId: string;
  /** As stored: null for the ad's totals; invalid-click fields keep their pseudo-dimension (risk-fields.ts). */
  dim: string | null;
  value: string | null;
  old: number;
  new: number;
  cause: CorrectionCause;
}

/**
 * A change to one named part of the state besides the counts. A part is either an append-only
 * log (bytes) or a hash (string fields → string or number values); the actor names it, the store
 * keeps it under the shard's key prefix.
 */
export type StateOp =
  | { kind: 'append'; part: string; bytes: Uint8Array }
  | { kind: 'hset'; part: string; fields: FlatCounts }
  | { kind: 'hdel'; part: string; fields: string[] }
  | { kind: 'del'; part: string };

/** Everything one atomic, fenced step persists for a shard. */
export interface ShardCommit {
  seq: number;
  watermark: number;
  closedThrough: number;
  /** The state's head: small (scalars and the names of its parts), rewritten by every commit. */
  head: Uint8Array;
  /** Count fields changed since the previous commit, as absolute values. */
  writes: CountWrite[];
  /** Changes to the other parts (dedupe blocks, hot-split state, invalid-click rules). */
  ops: StateOp[];
  /** Risk messages to publish before this commit is written (docs/risk.md). */
  outbox?: RiskOut[] | undefined;
  /**
   * Fields of closed, committed minutes this commit corrects (also those whose value came back to
   * the stored one: the runtime decides which to publish, see corrections-outbox.ts).
   */
  corrections?: CountCorrection[] | undefined;
}

/** What a store returns for a shard that has committed before. */
export interface StoredShard {
  seq: number;
  head: Uint8Array;
}

/** Reads back the parts a head names. Each call is one pipelined round trip; calls may run in parallel. */
export interface StateReader {
  /** Log parts, in the order asked; null for a part that does not exist. */
  logs(parts: readonly string[]): Promise<Array<Uint8Array | null>>;
  /** Hash parts, in the order asked; null for a part that does not exist. */
  hashes(parts: readonly string[]): Promise<Array<Map<string, string> | null>>;
  /** Every stored count (totals and each dimension value) of the given minutes. */
  minutes(minutes: readonly number[]): Promise<CountWrite[]>;
}

/** Bytes a commit carries (payload only), for metrics and benchmarks. */
export function commitBytes(c: ShardCommit): number {
  let n = c.head.byteLength + 32;
  for (const w of c.writes) {
    n += 16 + (w.dim?.length ?? 0) + (w.value?.length ?? 0);
    for (let i = 0; i < w.counts.length; i += 2) n += String(w.counts[i]).length + String(w.counts[i + 1]).length;
  }
  for (const op of c.ops) {
    n += op.part.length + 8;
    if (op.kind === 'append') n += op.bytes.byteLength;
    else if (op.kind === 'hset') for (const f of op.fields) n += String(f).length;
    else if (op.kind === 'hdel') for (const f of op.fields) n += f.length;
  }
  return n;
}
