/**
 * `adagg recompute --from T --to T [--ad ID…] [--dry-run|--apply] [--reason TEXT] [--by WHO] [--json]`:
 * re-aggregates the raw archive plus the stream tail with the shard actors' own code
 * (src/runtime/archive/recompute.ts), prints the difference with the stored counts, and with
 * --apply writes the differences of sealed minutes (recompute-commit.ts), with an audit record and
 * corrections-feed records. Exit 0: done (or no difference); 1: an error; 2: usage.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Redis } from 'ioredis';
import { actorRegistry } from '../../actors/index.ts';
import { aggregatedDimensions, type CompiledOptions } from '../../options.ts';
import { MINUTE_MS, isoOf, minuteStartMs } from '../../model/time.ts';
import type { ShardStatus } from '../../model/shard-queries.ts';
import { CorrectionsPublisher } from '../../runtime/corrections-outbox.ts';
import { connectNats } from '../../runtime/nats.ts';
import { openRedis } from '../../runtime/redis-connect.ts';
import { RedisKeys } from '../../runtime/redis-keys.ts';
import { ShardClient } from '../../runtime/shard-client.ts';
import { topology } from '../../runtime/topology.ts';
import { recompute, type RecomputeInput, type RecomputeProgress, type RecomputeRun } from '../../runtime/archive/recompute.ts';
import { applyRecompute, type ApplyResult } from '../../runtime/archive/recompute-commit.ts';
import { fieldKey, type FieldChange } from '../../runtime/archive/recompute-diff.ts';
import { UsageError, withOps } from './context.ts';
import { formatCount, formatTable } from './table.ts';

export const RECOMPUTE_HELP = `Usage: adagg recompute --from T --to T [--ad ID]… [--dry-run | --apply --reason TEXT] [--by WHO] [--json]

Re-aggregates the minutes [from, to) from the raw archive (ADAGG_ARCHIVE_DIR) plus the part of
the clicks stream not archived yet, with the shard actors' own dedupe, window and dimension code,
and compares every count field (each ad's total and each dimension value) with Redis. Prints the
minutes changed, the clicks added and removed, the ads that changed most, and the changed fields.

With --apply, writes the differences of SEALED minutes only, per shard in one atomic
compare-and-set step (a field that moved since the diff is diffed again), rewrites archived
aggregate hours, appends an audit record (<ADAGG_ARCHIVE_DIR>/audit/YYYY-MM.jsonl, GET /v1/audit)
and publishes each changed field on the corrections feed with cause 'recompute'. Minutes that are
closed but not sealed, or still open, are listed as skipped: their live shard actor may still
change them. A second --apply finds no difference and writes nothing. Refused
(ADAGG_E_RECOMPUTE_RISK) on deployments with invalid-click rules.

Options:
  --from T, --to T   ISO times on whole minutes (UTC), e.g. 2026-11-28T10:00:00Z (required)
  --ad ID            only this ad (repeatable)
  --dry-run          compare only (the default)
  --apply            write the sealed differences (needs --reason)
  --reason TEXT      why (audit log)
  --by WHO           who (audit log; default $USER)
  --json             machine-readable output (every changed field)
  -h, --help         this help

Exit codes: 0 done, 1 an error, 2 usage.`;

/** A minute-aligned ISO time argument, else a usage error. */
export function parseMinuteArg(name: string, v: string | undefined): number {
  if (v === undefined) throw new UsageError(`--${name} is required`);
  const ms = /^\d{4}-\d{2}-\d{2}T/.test(v) ? Date.parse(v) : NaN;
  if (!Number.isFinite(ms)) throw new UsageError(`--${name} must be an ISO time such as 2026-11-28T10:00:00Z, got '${v.slice(0, 40)}'`);
  if (ms % MINUTE_MS !== 0) throw new UsageError(`--${name} must be on a whole minute, got '${v}'`);
  return ms;
}

/** A progress line on stderr at most once a second. */
export function recomputeProgress(out: NodeJS.WritableStream, label = 'recompute'): (p: RecomputeProgress) => void {
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (p.phase === 'files') out.write(`${label}: reading ${p.rawFiles} raw file(s), ${p.deadLetterFiles} dead-letter file(s)\n`);
    else if (now - last < 1000) return;
    else if (p.phase === 'tail') out.write(`${label}: ${formatCount(p.messages)} stream-tail message(s) read\n`);
    else if (p.phase === 'feed') {
      const rate = p.elapsedMs > 0 ? Math.round((p.clicks * 1000) / p.elapsedMs) : 0;
      out.write(`${label}: ${formatCount(p.clicks)} clicks, ${formatCount(p.batches)} messages re-aggregated (${formatCount(rate)} clicks/s)\n`);
    } else out.write(`${label}: stored counts of shard ${p.shard + 1}/${p.shards}\n`);
    last = now;
  };
}

/** What the recompute and backfill commands share: the runtime wiring from the operator's options. */
export function recomputeWiring(
  opts: CompiledOptions,
  redis: Redis,
  nc: NatsConnection | undefined,
  archiveDir: string,
): Omit<RecomputeInput, 'fromMs' | 'toMs' | 'ads' | 'onProgress'> {
  const topo = topology(opts.prefix);
  const client = nc ? new ShardClient(nc, topo, opts.queryTimeoutMs, 6) : undefined;
  return {
    redis,
    keys: new RedisKeys(opts.prefix),
    nc,
    prefix: opts.prefix,
    shards: opts.shards,
    archiveDir,
    dimensions: aggregatedDimensions(opts),
    marginMs: opts.correctionHorizonMs + opts.maxFutureMs + opts.allowedLatenessMs + opts.idleTimeoutMs,
    actors: actorRegistry.shardActors,
    // Without NATS no actor can be asked: nothing counts as sealed, so nothing is applied.
    sealedThrough: async (shard) => (client ? ((await client.ask<ShardStatus>(shard, { op: 'status' })).sealedThrough ?? -1) : -1),
  };
}

/** Each skipped field's minute state (the others are sealed), by fieldKey. */
function states(run: RecomputeRun): Map<string, string> {
  return new Map(run.skipped.map((s) => [fieldKey(s), s.state]));
}

/** A changed field for output. */
function row(c: FieldChange, state: string): Record<string, unknown> {
  return { shard: c.shard, ad_id: c.ad_id, minute: isoOf(minuteStartMs(c.minute)), dim: c.dim, value: c.value, stored: c.old, recomputed: c.new, state };
}

/** The run (and apply) as JSON output. */
export function runJson(run: RecomputeRun, applied?: ApplyResult): Record<string, unknown> {
  const skipped = states(run);
  return {
    from: isoOf(run.fromMs),
    to: isoOf(run.toMs),
    ads: run.ads,
    ...run.summary,
    sealed_fields: run.applicable.length,
    skipped_fields: run.skipped.length,
    raw_files: run.rawFiles,
    tail_messages: run.tailMessages,
    clicks: run.clicks,
    duration_ms: run.durationMs,
    changes: run.changes.map((c) => row(c, skipped.get(fieldKey(c)) ?? 'sealed')),
    ...(applied
      ? { applied: { fields: applied.applied.length, shards: applied.shards, retries: applied.retries, audit_id: applied.audit?.id ?? null, archived_hours: applied.archivedHours.map(isoOf), corrections: applied.corrections } }
      : {}),
  };
}

/** The run as a table and summary lines. */
export function printRun(run: RecomputeRun, applied: ApplyResult | undefined, log: (s: string) => void): void {
  const state = states(run);
  const shown = run.changes.slice(0, 50);
  if (shown.length > 0) {
    log(
      formatTable(
        [{ header: 'AD' }, { header: 'MINUTE' }, { header: 'DIM' }, { header: 'VALUE' }, { header: 'STORED', align: 'right' }, { header: 'RECOMPUTED', align: 'right' }, { header: 'STATE' }],
        shown.map((c) => [c.ad_id, isoOf(minuteStartMs(c.minute)), c.dim ?? '(total)', c.value ?? '', String(c.old), String(c.new), state.get(fieldKey(c)) ?? 'sealed']),
      ),
    );
    if (run.changes.length > shown.length) log(`… ${run.changes.length - shown.length} more changed field(s) (--json lists all)`);
  }
  const s = run.summary;
  log(
    `${isoOf(run.fromMs)} → ${isoOf(run.toMs)}: ${formatCount(s.fields)} field(s) differ in ${formatCount(s.minutes_changed)} minute(s) ` +
      `(${formatCount(s.ad_minutes_changed)} ad-minutes), clicks +${formatCount(s.clicks_added)} −${formatCount(s.clicks_removed)}; ` +
      `${formatCount(run.clicks)} clicks re-aggregated from ${run.rawFiles} file(s) + ${formatCount(run.tailMessages)} tail message(s) in ${run.durationMs} ms`,
  );
  if (s.top_ads.length > 0) log(`top changed ads: ${s.top_ads.map((a) => `${a.ad_id} ${a.delta >= 0 ? '+' : ''}${a.delta} (${a.minutes} min)`).join(', ')}`);
  if (run.skipped.length > 0) {
    log(`${formatCount(run.skipped.length)} field(s) of minutes not sealed yet are skipped by --apply: their live shard actor may still change them`);
  }
  if (applied) {
    log(
      applied.applied.length === 0
        ? 'applied: nothing to write'
        : `applied: ${formatCount(applied.applied.length)} field(s) on ${applied.shards} shard(s), audit record ${applied.audit?.id}, ` +
            `${applied.corrections} correction record(s), ${applied.archivedHours.length} archived hour(s) rewritten`,
    );
  }
}

export async function recomputeCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      from: { type: 'string' },
      to: { type: 'string' },
      ad: { type: 'string', multiple: true },
      'dry-run': { type: 'boolean' },
      apply: { type: 'boolean' },
      reason: { type: 'string' },
      by: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const fromMs = parseMinuteArg('from', values.from);
  const toMs = parseMinuteArg('to', values.to);
  if (toMs <= fromMs) throw new UsageError('--to must be after --from');
  if (values.apply && values['dry-run']) throw new UsageError('--apply and --dry-run exclude each other');
  const reason = values.reason?.trim();
  if (values.apply && !reason) throw new UsageError('--apply needs --reason TEXT (it goes into the audit log)');
  const by = values.by ?? process.env.USER ?? 'unknown';
  return withOps(async (ctx) => {
    const redis = await openRedis(ctx.opts, 'ops');
    const nc = ctx.opts.natsUrl ? await connectNats({ ...ctx.opts, natsUrl: ctx.opts.natsUrl }, 'adagg-recompute') : undefined;
    const archiveDir = path.resolve(ctx.opts.archiveDir);
    try {
      const run = await recompute({ ...recomputeWiring(ctx.opts, redis, nc, archiveDir), fromMs, toMs, ads: values.ad, onProgress: recomputeProgress(process.stderr) });
      let applied: ApplyResult | undefined;
      if (values.apply) {
        const publisher = nc ? new CorrectionsPublisher(nc, topology(ctx.opts.prefix), ctx.opts.shards) : undefined;
        applied = await applyRecompute({
          redis,
          keys: new RedisKeys(ctx.opts.prefix),
          archiveDir,
          countTtlMs: ctx.opts.countTtlMs,
          run,
          cause: 'recompute',
          by,
          reason: reason!,
          command: ['adagg', 'recompute', ...args].join(' '),
          publish: publisher ? (r) => publisher.publish(r) : undefined,
        });
      }
      if (values.json) console.log(JSON.stringify(runJson(run, applied)));
      else printRun(run, applied, (s) => console.log(s));
      return 0;
    } finally {
      await redis.quit().catch(() => redis.disconnect());
      await nc?.close().catch(() => undefined);
    }
  });
}
