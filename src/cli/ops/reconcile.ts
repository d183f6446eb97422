/**
 * `adagg reconcile --day YYYY-MM-DD [--json] [--wait-ms N]`: compares the raw archive with the stored
 * counts of one UTC day (src/runtime/archive/reconcile.ts), prints the mismatches and stores the
 * report. Exit 0: no mismatch; 1: mismatches (or another error); 2: the archive is behind
 * (ADAGG_E_ARCHIVE_BEHIND) or a usage error.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { AdaggError, ErrorCode } from '../../errors.ts';
import { dayStartMs, reconcileDay, type ReconcileProgress } from '../../runtime/archive/reconcile.ts';
import { openRedis } from '../../runtime/redis-connect.ts';
import { connectNats } from '../../runtime/nats.ts';
import { RedisKeys } from '../../runtime/redis-keys.ts';
import { lastSequence } from '../../runtime/streams.ts';
import { topology } from '../../runtime/topology.ts';
import { UsageError, withOps } from './context.ts';
import { formatCount, formatDuration, formatTable } from './table.ts';

export const RECONCILE_HELP = `Usage: adagg reconcile --day YYYY-MM-DD [--json] [--wait-ms N]

Compares, per ad and minute of one UTC day, the distinct clicks in the raw archive
(ADAGG_ARCHIVE_DIR, DuckDB over its Parquet files) with the final counts in Redis (valid plus
invalid), for the minutes each shard has closed; later minutes are reported as pending. First
waits until every shard's archiver has archived what the shard applied. Prints the mismatches
(ad, minute, archive, stored, diff) and a summary, and stores the report in Redis
(GET /v1/reconciliations/{day}).

Options:
  --day YYYY-MM-DD   the UTC day (required)
  --json             machine-readable output (every mismatch)
  --wait-ms N        how long to wait for the archive (default 60000)
  -h, --help         this help

Exit codes: 0 no mismatch, 1 mismatches or an error, 2 archive behind (ADAGG_E_ARCHIVE_BEHIND) or usage.`;

/** A progress line on stderr at most once a second (the wait, files, shards read). */
function progressPrinter(out: NodeJS.WritableStream): (p: ReconcileProgress) => void {
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (p.phase === 'waiting') {
      if (now - last < 1000) return;
      const b = p.behind.map((x) => `shard ${x.shard} ${x.archived}/${x.seq}`).join(', ');
      out.write(`reconcile: waiting for the archive (${formatDuration(p.waitedMs)}): ${b}\n`);
    } else if (p.phase === 'raw') {
      out.write(`reconcile: reading ${p.files} raw file(s), ${p.deadLetterFiles} dead-letter file(s)\n`);
    } else {
      if (now - last < 1000 && p.shard !== p.shards - 1) return;
      out.write(`reconcile: stored counts of shard ${p.shard + 1}/${p.shards}\n`);
    }
    last = now;
  };
}

export async function reconcileCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { day: { type: 'string' }, json: { type: 'boolean' }, 'wait-ms': { type: 'string' } } });
  if (values.day === undefined) throw new UsageError('--day YYYY-MM-DD is required');
  const w = values['wait-ms'];
  if (w !== undefined && !/^\d+$/.test(w)) throw new UsageError(`--wait-ms must be a whole number of milliseconds, got '${w}'`);
  const day = values.day;
  if (dayStartMs(day) === undefined) throw new UsageError(`--day must be a UTC date YYYY-MM-DD, got '${day}'`);
  return withOps(async (ctx) => {
    const redis = await openRedis(ctx.opts, 'ops');
    // With NATS, the run also waits for the dead-letter archiver (refusals of applied clicks).
    const nc = ctx.opts.natsUrl ? await connectNats({ ...ctx.opts, natsUrl: ctx.opts.natsUrl }, 'adagg-reconcile') : undefined;
    const dlq = topology(ctx.opts.prefix).deadLetterStream;
    try {
      const report = await reconcileDay({
        redis,
        keys: new RedisKeys(ctx.opts.prefix),
        prefix: ctx.opts.prefix,
        shards: ctx.opts.shards,
        archiveDir: path.resolve(ctx.opts.archiveDir),
        day,
        waitMs: w === undefined ? 60_000 : Number(w),
        horizonMs: ctx.opts.correctionHorizonMs,
        ...(nc ? { deadLetterLast: () => lastSequence(nc, dlq) } : {}),
        onProgress: progressPrinter(process.stderr),
      });
      const { all, rows: _rows, ...summary } = report;
      if (values.json) {
        console.log(JSON.stringify({ ...summary, rows: all }));
      } else {
        if (all.length > 0) {
          console.log(
            formatTable(
              [{ header: 'AD' }, { header: 'MINUTE' }, { header: 'ARCHIVE', align: 'right' }, { header: 'STORED', align: 'right' }, { header: 'DIFF', align: 'right' }],
              all.map((m) => [m.ad_id, m.minute, String(m.archive), String(m.stored), m.diff > 0 ? `+${m.diff}` : String(m.diff)]),
            ),
          );
        }
        console.log(
          `${day}: ${formatCount(report.ads)} ads, ${formatCount(report.checked_minutes)} ad-minutes, ${formatCount(report.clicks)} clicks compared, ` +
            `${formatCount(report.mismatches)} mismatch${report.mismatches === 1 ? '' : 'es'}, ${formatCount(report.pending_minutes)} ad-minutes pending, ` +
            `${report.files} files, ${report.duration_ms} ms`,
        );
      }
      return report.mismatches > 0 ? 1 : 0;
    } catch (err) {
      if (err instanceof AdaggError && err.code === ErrorCode.ArchiveBehind) {
        console.error(`adagg: ${err.code}: ${err.message}`);
        return 2;
      }
      throw err;
    } finally {
      await redis.quit().catch(() => redis.disconnect());
      await nc?.close().catch(() => undefined);
    }
  });
}
