/**
 * Kappa recompute (issue 10, docs/history.md "Recompute, audit log, backfill"): re-aggregates the
 * raw archive plus the stream tail (recompute-source.ts) with private shard actors — the live
 * aggregation code (recompute-actors.ts) — and compares every count field of the minutes in
 * [from, to) with Redis (recompute-stored.ts, recompute-diff.ts). `applyRecompute`
 * (recompute-commit.ts) then writes the differences of sealed minutes.
 *
 * @example
 * const run = await recompute({ redis, keys, nc, prefix, shards, archiveDir, fromMs, toMs, dimensions, marginMs, actors, sealedThrough });
 * console.log(run.summary.minutes_changed, run.changes.length);
 */
import path from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Redis } from 'ioredis';
import { AdaggError, ErrorCode } from '../../errors.ts';
import type { Click } from '../../model/click.ts';
import { shardOf } from '../../model/partition.ts';
import { MINUTE_MS } from '../../model/time.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { RedisKeys } from '../redis-keys.ts';
import { knownRuleNames } from '../risk-rules-publisher.ts';
import type { ShardBehaviourFactory } from '../shard-behaviour.ts';
import { lastSequence } from '../streams.ts';
import { topology } from '../topology.ts';
import { duckConnection } from './duckdb.ts';
import { parseFileName } from './layout.ts';
import { deadLetterFilesFrom } from './reconcile-raw.ts';
import { shardPositions, type ShardPosition } from './reconcile-stored.ts';
import { RecomputeActors } from './recompute-actors.ts';
import { diffFields, summarize, type DiffSummary, type FieldChange, type FieldValues } from './recompute-diff.ts';
import { BACKFILL_SUBJECT, rawFilesOfHours, readTail, streamArchiveRows, type SourceBatch, type StreamTail } from './recompute-source.ts';
import { readStoredFields } from './recompute-stored.ts';

/** Where a run is, for a progress line. */
export type RecomputeProgress =
  | { phase: 'files'; rawFiles: number; deadLetterFiles: number }
  | { phase: 'tail'; messages: number }
  | { phase: 'feed'; clicks: number; batches: number; elapsedMs: number }
  | { phase: 'stored'; shard: number; shards: number };

export interface RecomputeInput {
  redis: Redis;
  keys: RedisKeys;
  /** For the stream tail; without it only the archive is read. */
  nc?: NatsConnection | undefined;
  /** ADAGG_PREFIX (subject names). */
  prefix: string;
  shards: number;
  archiveDir: string;
  /** First minute's start and the end (exclusive), epoch ms, minute-aligned. */
  fromMs: number;
  toMs: number;
  /** Only these ads (all when undefined or empty). */
  ads?: readonly string[] | undefined;
  /** The deployment's aggregated dimensions and cubes. */
  dimensions: readonly string[];
  /**
   * How far from the range a copy of one of its clicks may lie (the live actors' dedupe retention:
   * horizon + max future + lateness + idle timeout): those hours' files are read too.
   */
  marginMs: number;
  /** Creates the private shard actors (the composition root passes the actor registry's). */
  actors: Pick<ShardBehaviourFactory, 'create'>;
  /** A shard's sealed bound (its actor's `sealedThrough`, -1 none): only sealed minutes are applied. */
  sealedThrough: (shard: number) => Promise<number>;
  /**
   * Clicks fed after everything else, like backfilled rows (a backfill's dry run: rows it would
   * write). Not part of the archive.
   */
  extra?: readonly Click[] | undefined;
  clock?: Clock;
  onProgress?: (p: RecomputeProgress) => void;
}

/** A change that --apply would not write, with why. */
export interface SkippedChange extends FieldChange {
  state: 'open' | 'closed';
}

/** The outcome of one comparison. */
export interface RecomputeRun {
  fromMs: number;
  toMs: number;
  ads: string[] | null;
  /** Every changed field (sealed and not). */
  changes: FieldChange[];
  /** Changes of sealed minutes: what --apply writes. */
  applicable: FieldChange[];
  /** Changes of minutes not sealed yet (a live actor may still change them). */
  skipped: SkippedChange[];
  summary: DiffSummary;
  positions: ShardPosition[];
  /** Per shard: its sealed bound when read. */
  sealed: number[];
  rawFiles: number;
  tailMessages: number;
  clicks: number;
  durationMs: number;
  /** The recomputed values of the shards with changes --apply may write (to diff a shard again when its stored values moved). */
  truth: FieldValues;
}

/** Refuses deployments with invalid-click rules (ADAGG_E_RECOMPUTE_RISK): see docs/history.md. */
async function refuseRiskRules(redis: Redis, prefix: string): Promise<void> {
  const rules = await knownRuleNames(redis, prefix);
  if (rules.length > 0) {
    throw new AdaggError(
      ErrorCode.RecomputeRisk,
      `recompute is not available with invalid-click rules (${rules.slice(0, 5).join(', ')}): the rules and spread verdicts in force are not archived, so the invalid fields cannot be recomputed`,
      { details: { rules } },
    );
  }
}

function checkRange(fromMs: number, toMs: number): void {
  if (!Number.isSafeInteger(fromMs) || !Number.isSafeInteger(toMs) || fromMs % MINUTE_MS !== 0 || toMs % MINUTE_MS !== 0) {
    throw new AdaggError(ErrorCode.BadParam, 'recompute: from and to must be whole minutes', { details: { param: 'from' } });
  }
  if (toMs <= fromMs) throw new AdaggError(ErrorCode.BadParam, 'recompute: to must be after from', { details: { param: 'to' } });
}

/** The shard a batch's clicks belong to (hot child subjects and backfill rows: each click's ad's). */
function splitByShard(b: SourceBatch, shards: number): Map<number, SourceBatch['clicks']> {
  const m = /\.clicks\.(\d+)$/.exec(b.subject);
  if (m) return new Map([[Number(m[1]), b.clicks]]);
  const out = new Map<number, SourceBatch['clicks']>();
  for (const c of b.clicks) {
    const s = shardOf(c.ad_id, shards);
    const l = out.get(s);
    if (l) l.push(c);
    else out.set(s, [c]);
  }
  return out;
}

/** Reads the tail plan's bounds: each unit's archived sequence and the streams' last ones. */
async function tailOf(i: RecomputeInput, positions: readonly ShardPosition[], shardSet: ReadonlySet<number> | undefined, onMessage: () => void): Promise<StreamTail> {
  const empty: StreamTail = { batches: [], tooOld: new Set(), messages: 0 };
  if (!i.nc) return empty;
  const topo = topology(i.prefix);
  const [hotArchived, dlqArchived, clicksLast, dlqLast] = await Promise.all([
    i.redis.hget(i.keys.archive('a-hot'), 'seq').then((s) => Number(s ?? 0)),
    i.redis.hget(i.keys.archive('a-dlq'), 'seq').then((s) => Number(s ?? 0)),
    lastSequence(i.nc, topo.clicksStream),
    lastSequence(i.nc, topo.deadLetterStream),
  ]);
  return readTail(
    i.nc,
    {
      clicksStream: topo.clicksStream,
      shards: positions.filter((p) => !shardSet || shardSet.has(p.shard)).map((p) => ({ subject: topo.clickSubject(p.shard), from: p.archived + 1, to: p.seq })),
      hot: { filter: topo.hotSubjects, from: hotArchived + 1, to: clicksLast },
      deadLetters: { stream: topo.deadLetterStream, filter: topo.deadLetterSubject('*'), from: dlqArchived + 1, to: dlqLast },
    },
    undefined,
    onMessage,
  );
}

/** Re-aggregates [from, to) and compares it with the stored counts (nothing is written). */
export async function recompute(i: RecomputeInput): Promise<RecomputeRun> {
  checkRange(i.fromMs, i.toMs);
  await refuseRiskRules(i.redis, i.prefix);
  const clock = i.clock ?? systemClock;
  const t0 = clock.now();
  const ads = i.ads && i.ads.length > 0 ? new Set(i.ads) : undefined;
  // Named ads: their shards' every click still goes through the dedupe (ids are per shard, not per ad).
  const shardSet = ads ? new Set([...ads].map((a) => shardOf(a, i.shards))) : undefined;
  const topo = topology(i.prefix);
  const positions = await shardPositions(i.redis, i.keys, i.shards);
  const sealed = await Promise.all(positions.map((p) => i.sealedThrough(p.shard)));
  let tailMessages = 0;
  const tail = await tailOf(i, positions, shardSet, () => {
    if (++tailMessages % 1000 === 0) i.onProgress?.({ phase: 'tail', messages: tailMessages });
  });
  i.onProgress?.({ phase: 'tail', messages: tail.messages });
  const startDay = new Date(i.fromMs - i.marginMs).toISOString().slice(0, 10);
  const [rawFiles, deadLetterFiles] = await Promise.all([
    rawFilesOfHours(i.archiveDir, i.fromMs - i.marginMs, i.toMs + i.marginMs),
    deadLetterFilesFrom(i.archiveDir, startDay),
  ]);
  i.onProgress?.({ phase: 'files', rawFiles: rawFiles.length, deadLetterFiles: deadLetterFiles.length });

  const fromMinute = i.fromMs / MINUTE_MS;
  const toMinute = i.toMs / MINUTE_MS;
  const minutes: number[] = [];
  for (let m = fromMinute; m < toMinute; m++) minutes.push(m);
  const committed = new Map(positions.map((p) => [topo.clickSubject(p.shard), p.seq]));
  const changes: FieldChange[] = [];
  const truth: FieldValues = new Map();
  let fed = 0;
  let batches = 0;
  let lastReport = clock.now();
  // One shard at a time: its private actor holds one shard's clicks and counts of the range, so
  // memory follows the range divided by the shards, not the whole range. A shard reads its own
  // files (`s<k>-…`) and the hot and backfill files (their rows are split by the ad's shard).
  const conn = await duckConnection();
  try {
    for (const p of positions) {
      const shard = p.shard;
      if (shardSet && !shardSet.has(shard)) continue;
      const actors = new RecomputeActors({ actors: i.actors, clock, dimensions: i.dimensions });
      const feed = async (b: SourceBatch): Promise<void> => {
        const backfill = b.subject === BACKFILL_SUBJECT;
        const clicks = backfill ? b.clicks : b.clicks.filter((c) => !tail.tooOld.has(`${c.click_id} ${b.seq}`));
        const mine = splitByShard({ ...b, clicks }, i.shards).get(shard);
        if (mine) await actors.apply(shard, mine, backfill ? undefined : b.seq);
        batches++;
        if (clock.now() - lastReport >= 1000) {
          lastReport = clock.now();
          i.onProgress?.({ phase: 'feed', clicks: fed + actors.fed, batches, elapsedMs: lastReport - t0 });
        }
      };
      const own = `s${shard}`;
      const files = rawFiles.filter((f) => {
        const unit = parseFileName(path.basename(f))?.unit;
        return unit === own || unit === 'hot' || unit === 'bf';
      });
      const tailBatches = tail.batches.filter((b) => b.subject === topo.clickSubject(shard) || !/\.clicks\.\d+$/.test(b.subject));
      let t = 0;
      for await (const b of streamArchiveRows(conn, { rawFiles: files, deadLetterFiles, committed, hotSubjectPrefix: topo.hotSubjects.slice(0, -1) })) {
        // The tail's messages come after the archive's of their own subject, but interleave with
        // other subjects' archived ones: merge by stream sequence; backfill rows after everything.
        const limit = b.subject === BACKFILL_SUBJECT ? Infinity : b.seq;
        while (t < tailBatches.length && tailBatches[t]!.seq < limit) await feed(tailBatches[t++]!);
        await feed(b);
      }
      while (t < tailBatches.length) await feed(tailBatches[t++]!);
      if (i.extra && i.extra.length > 0) await feed({ subject: BACKFILL_SUBJECT, seq: 0, clicks: [...i.extra] });
      fed += actors.fed;
      const mine = actors.fields(fromMinute, toMinute, ads);
      i.onProgress?.({ phase: 'stored', shard, shards: positions.length });
      const stored: FieldValues = new Map();
      await readStoredFields(i.redis, i.keys, shard, minutes, ads, stored);
      const found = diffFields(stored, mine);
      changes.push(...found);
      // Kept only where --apply may write: a shard whose stored values move meanwhile is diffed again.
      if (found.some((c) => c.minute <= (sealed[shard] ?? -1))) for (const [k, v] of mine) truth.set(k, v);
    }
  } finally {
    conn.closeSync();
  }
  i.onProgress?.({ phase: 'feed', clicks: fed, batches, elapsedMs: clock.now() - t0 });
  const applicable: FieldChange[] = [];
  const skipped: SkippedChange[] = [];
  for (const c of changes) {
    if (c.minute <= (sealed[c.shard] ?? -1)) applicable.push(c);
    else skipped.push({ ...c, state: c.minute <= (positions[c.shard]?.closedThrough ?? -Infinity) ? 'closed' : 'open' });
  }
  return {
    fromMs: i.fromMs,
    toMs: i.toMs,
    ads: ads ? [...ads] : null,
    changes,
    applicable,
    skipped,
    summary: summarize(changes),
    positions,
    sealed,
    rawFiles: rawFiles.length,
    tailMessages: tail.messages,
    clicks: fed,
    durationMs: clock.now() - t0,
    truth,
  };
}

/** Re-reads one shard's stored fields of the given minutes and diffs them against `truth` again. */
export async function rediffShard(redis: Redis, keys: RedisKeys, shard: number, minutes: readonly number[], ads: ReadonlySet<string> | undefined, truth: FieldValues): Promise<FieldChange[]> {
  const stored: FieldValues = new Map();
  await readStoredFields(redis, keys, shard, minutes, ads, stored);
  const mine: FieldValues = new Map();
  const set = new Set(minutes);
  for (const [k, v] of truth) {
    const [s, m] = JSON.parse(k) as [number, number];
    if (s === shard && set.has(m)) mine.set(k, v);
  }
  return diffFields(stored, mine);
}
