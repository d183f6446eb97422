/**
 * `recompute --apply` (and backfill): writes the differences of SEALED minutes found by
 * `recompute` (recompute.ts). Per shard one compare-and-set Lua step (recompute-apply.ts); when a
 * field moved since the diff, that shard is diffed again and retried (bounded). Then the aggregate
 * archive follows (applyArchivedChanges: hours already archived), the audit record is appended
 * (audit-log.ts), and each changed field goes out on the corrections feed with cause `recompute`
 * or `backfill`. A second run finds no difference and writes nothing (no audit record either).
 */
import type { Redis } from 'ioredis';
import { AdaggError, ErrorCode } from '../../errors.ts';
import { isoOf, minuteStartMs, MINUTE_MS } from '../../model/time.ts';
import { systemClock, type Clock } from '../clock.ts';
import { ruleOfField, type CorrectionRecord } from '../corrections-outbox.ts';
import type { RedisKeys } from '../redis-keys.ts';
import { applyArchivedChanges, type ArchivedChange } from './aggregate-apply.ts';
import { appendAudit, auditId, type AuditRecord } from './audit-log.ts';
import { rediffShard, type RecomputeRun } from './recompute.ts';
import { applyShardChanges } from './recompute-apply.ts';
import type { FieldChange } from './recompute-diff.ts';

/** Rewrites archived hours with new values (Part A's applyArchivedChanges, injectable for tests). */
export type ArchiveApply = (archiveDir: string, changes: ReadonlyArray<ArchivedChange>) => Promise<{ hours: number[] }>;

export interface ApplyInput {
  redis: Redis;
  keys: RedisKeys;
  archiveDir: string;
  /** ADAGG_COUNT_TTL_MS: a count hash created by the apply expires like the live ones. */
  countTtlMs: number;
  run: RecomputeRun;
  cause: 'recompute' | 'backfill';
  by: string;
  reason: string;
  /** The command line, for the audit record. */
  command: string;
  /** Publishes corrections-feed records (CorrectionsPublisher.publish); none when undefined. */
  publish?: ((records: readonly CorrectionRecord[]) => Promise<void>) | undefined;
  /** @default applyArchivedChanges */
  archiveApply?: ArchiveApply | undefined;
  /** Diff-and-retry rounds per shard whose fields moved. @default 3 */
  maxRetries?: number;
  clock?: Clock;
}

export interface ApplyResult {
  /** The fields written (after any re-diff). */
  applied: FieldChange[];
  /** Shards written. */
  shards: number;
  retries: number;
  /** The audit record (undefined when nothing changed). */
  audit: AuditRecord | undefined;
  auditFile: string | undefined;
  /** Archived hours rewritten (epoch ms). */
  archivedHours: number[];
  /** Corrections-feed records published. */
  corrections: number;
}

/** Applies the sealed part of a run (see the module comment). */
export async function applyRecompute(i: ApplyInput): Promise<ApplyResult> {
  const clock = i.clock ?? systemClock;
  const maxRetries = i.maxRetries ?? 3;
  const run = i.run;
  const ads = run.ads ? new Set(run.ads) : undefined;
  const byShard = new Map<number, FieldChange[]>();
  for (const c of run.applicable) {
    const l = byShard.get(c.shard);
    if (l) l.push(c);
    else byShard.set(c.shard, [c]);
  }
  const applied: FieldChange[] = [];
  let retries = 0;
  for (const [shard, first] of [...byShard].sort((a, b) => a[0] - b[0])) {
    let changes = first;
    const sealed = run.sealed[shard] ?? -1;
    for (let round = 0; ; round++) {
      const out = await applyShardChanges(i.redis, i.keys, shard, changes, i.countTtlMs);
      if (out.applied) break;
      if (round >= maxRetries) {
        throw new AdaggError(ErrorCode.RecomputeConflict, `shard ${shard}: stored counts kept changing during the apply (${maxRetries + 1} attempts); run it again`, {
          details: { shard, field: out.moved, found: out.found },
        });
      }
      retries++;
      const minutes: number[] = [];
      for (let m = run.fromMs / MINUTE_MS; m < run.toMs / MINUTE_MS && m <= sealed; m++) minutes.push(m);
      changes = (await rediffShard(i.redis, i.keys, shard, minutes, ads, run.truth)).filter((c) => c.minute <= sealed);
    }
    applied.push(...changes);
  }
  if (applied.length === 0) return { applied, shards: 0, retries, audit: undefined, auditFile: undefined, archivedHours: [], corrections: 0 };
  // Between the counts written and the archived files looked for: an aggregate archiver writing one
  // of these hours right now sees the counter move and archives the hour again (aggregate-archiver.ts).
  await i.redis.incr(i.keys.aggGen());
  const archived = await (i.archiveApply ?? applyArchivedChanges)(
    i.archiveDir,
    applied.map((c) => ({ ad_id: c.ad_id, minute: c.minute, dim: c.dim, value: c.dim === null ? null : c.value, count: c.new })),
  );
  const at = isoOf(clock.now());
  const audit: AuditRecord = {
    id: auditId(),
    at,
    by: i.by,
    reason: i.reason,
    command: i.command,
    cause: i.cause,
    from: isoOf(run.fromMs),
    to: isoOf(run.toMs),
    ads: run.ads,
    changes: applied.map((c) => ({ ad_id: c.ad_id, minute: isoOf(minuteStartMs(c.minute)), dim: c.dim, value: c.value, old: c.old, new: c.new })),
  };
  const auditFile = await appendAudit(i.archiveDir, audit);
  let corrections = 0;
  if (i.publish) {
    const records: CorrectionRecord[] = applied.map((c) => ({
      ad_id: c.ad_id,
      minute: isoOf(minuteStartMs(c.minute)),
      dim: c.dim,
      value: c.value,
      rule: ruleOfField(c.dim, c.value),
      old: c.old,
      new: c.new,
      cause: i.cause,
      unit: c.shard,
      seq: run.positions[c.shard]?.seq ?? 0,
      at,
    }));
    await i.publish(records);
    corrections = records.length;
  }
  return { applied, shards: byShard.size, retries, audit, auditFile, archivedHours: archived.hours, corrections };
}
