/**
 * `adagg backfill FILE… | --from-dead-letters [--from T --to T] [--dry-run] [--reason TEXT] [--by WHO] [--json]`:
 * loads clicks older than the correction horizon into the raw archive and recomputes the minutes
 * they touch (src/runtime/archive/backfill.ts). Lines are read like `adagg ingest` reads them
 * (NDJSON or `[AdClickEvent] …` log lines, click ids derived the same way); bad lines are refused
 * one by one with a code, the valid ones beside them are loaded. Exit 0: done; 3: done, with
 * refused lines; 1: an error; 2: usage.
 */
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ErrorCode } from '../../errors.ts';
import type { Click } from '../../model/click.ts';
import { isoOf } from '../../model/time.ts';
import { parseJsonLine, validateClick } from '../../model/validate.ts';
import { CorrectionsPublisher } from '../../runtime/corrections-outbox.ts';
import { connectNats } from '../../runtime/nats.ts';
import { openRedis } from '../../runtime/redis-connect.ts';
import { RedisKeys } from '../../runtime/redis-keys.ts';
import { topology } from '../../runtime/topology.ts';
import { backfill, type BackfillProgress } from '../../runtime/archive/backfill.ts';
import { tooOldLetterClicks } from '../../runtime/archive/backfill-letters.ts';
import { isKeyLine, keyLineHash, lineRecord, readLines } from '../ingest-lines.ts';
import { UsageError, withOps } from './context.ts';
import { parseMinuteArg, printRun, recomputeProgress, recomputeWiring, runJson } from './recompute.ts';
import { formatCount } from './table.ts';

export const BACKFILL_HELP = `Usage: adagg backfill FILE… | --from-dead-letters [--from T --to T] [--dry-run | --reason TEXT] [--by WHO] [--json]

Loads clicks older than the correction horizon — a late log file, or the clicks of the 'too_old'
dead letters — into the raw archive (ADAGG_ARCHIVE_DIR, unit 'bf' files), then recomputes the
minutes they touch and writes the differences (adagg recompute --apply, cause 'backfill'), with an
audit record per range and corrections-feed records. Lines are NDJSON clicks or log lines such as
'[AdClickEvent] ad001, 2024-07-09 00:00:01, user-1, 207.148.22.22, USA' (click ids derived like
'adagg ingest'). A click id the archive already holds for the ad is not loaded again, so a second
backfill of the same file changes nothing. Refused lines are listed with their code
(ADAGG_E_BACKFILL_BAD_LINE and the reason: invalid_ts, missing_field, too_recent (newer than the
horizon: use 'adagg ingest'), …); the valid lines beside them are loaded.

Options:
  --from-dead-letters  load the clicks of the archived 'too_old' dead letters
  --from T, --to T     with --from-dead-letters: only clicks of [from, to) (ISO, whole minutes)
  --dry-run            show what would be loaded and the difference; write nothing
  --reason TEXT        why (audit log; required unless --dry-run)
  --by WHO             who (audit log; default $USER)
  --source-id ID       file identity for derived click ids (as adagg ingest --source-id)
  --json               machine-readable output
  -h, --help           this help

Exit codes: 0 done, 3 done with refused lines, 1 an error, 2 usage.`;

/** A refused line. */
interface BadLine {
  file: string;
  line: number;
  code: typeof ErrorCode.BackfillBadLine;
  reason: string;
  error: string;
}


/** Parses and validates the files' lines; clicks newer than `newestMs` are refused as too_recent. */
async function readClicks(files: readonly string[], o: { sourceId?: string | undefined; nowMs: number; newestMs: number; maxFutureMs: number; countryAlpha3: string }): Promise<{ clicks: Click[]; bad: BadLine[]; lines: number }> {
  const clicks: Click[] = [];
  const bad: BadLine[] = [];
  let lines = 0;
  for (const file of files) {
    const identity = o.sourceId ?? (file === '-' ? 'stdin' : await realpath(file));
    let source: string | undefined;
    for await (const l of readLines(file)) {
      lines++;
      if (source === undefined && isKeyLine(l)) source = `${identity}#${keyLineHash(l.text)}`;
      const refuse = (reason: string, error: string): void => void bad.push({ file, line: l.line, code: ErrorCode.BackfillBadLine, reason, error });
      const rec = lineRecord(l, source ?? identity);
      if (rec.kind === 'skip') continue;
      if (rec.kind === 'reject') {
        refuse(rec.code, rec.error);
        continue;
      }
      const json = parseJsonLine(rec.body);
      if (!json.ok) {
        refuse(json.rejection.code, json.rejection.error);
        continue;
      }
      // No horizon: backfill is for old clicks. Too far ahead is still a clock bug.
      const v = validateClick(json.value, { nowMs: o.nowMs, correctionHorizonMs: Number.MAX_SAFE_INTEGER, maxFutureMs: o.maxFutureMs, countryAlpha3: o.countryAlpha3 });
      if (!v.ok) refuse(v.rejection.code, v.rejection.error);
      else if (v.click.ts >= o.newestMs) refuse('too_recent', `field ts ${isoOf(v.click.ts)} is within the correction horizon (its minute is not sealed yet): send it with 'adagg ingest'`);
      else clicks.push(v.click);
    }
  }
  return { clicks, bad, lines };
}

function progress(out: NodeJS.WritableStream): (p: BackfillProgress) => void {
  return (p) => {
    if (p.phase === 'dedupe') out.write(`backfill: ${formatCount(p.clicks)} click(s), checking ${p.files} archive file(s) for ids already counted\n`);
    else if (p.phase === 'written') out.write(`backfill: wrote ${formatCount(p.rows)} row(s) in ${p.files} file(s), batch ${p.batch}\n`);
    else out.write(`backfill: recomputing range ${p.range}/${p.ranges}: ${isoOf(p.fromMs)} → ${isoOf(p.toMs)}\n`);
  };
}

export async function backfillCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      'from-dead-letters': { type: 'boolean' },
      from: { type: 'string' },
      to: { type: 'string' },
      'dry-run': { type: 'boolean' },
      reason: { type: 'string' },
      by: { type: 'string' },
      'source-id': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const letters = values['from-dead-letters'] === true;
  if (letters && positionals.length > 0) throw new UsageError('give FILE… or --from-dead-letters, not both');
  if (!letters && positionals.length === 0) throw new UsageError('give FILE… (or - for stdin) or --from-dead-letters');
  if (!letters && (values.from !== undefined || values.to !== undefined)) throw new UsageError('--from/--to go with --from-dead-letters');
  const fromMs = values.from === undefined ? undefined : parseMinuteArg('from', values.from);
  const toMs = values.to === undefined ? undefined : parseMinuteArg('to', values.to);
  const dryRun = values['dry-run'] === true;
  const reason = values.reason?.trim();
  if (!dryRun && !reason) throw new UsageError('--reason TEXT is required (it goes into the audit log), or --dry-run');
  const by = values.by ?? process.env.USER ?? 'unknown';
  return withOps(async (ctx) => {
    const o = ctx.opts;
    const redis = await openRedis(o, 'ops');
    const nc = o.natsUrl ? await connectNats({ ...o, natsUrl: o.natsUrl }, 'adagg-backfill') : undefined;
    const archiveDir = path.resolve(o.archiveDir);
    try {
      const wiring = recomputeWiring(o, redis, nc, archiveDir);
      const now = Date.now();
      let bad: BadLine[] = [];
      let clicks: Click[];
      let lines = 0;
      if (letters) clicks = (await tooOldLetterClicks(archiveDir, fromMs, toMs)).filter((c) => c.ts < now - wiring.marginMs);
      else ({ clicks, bad, lines } = await readClicks(positionals, { sourceId: values['source-id'], nowMs: now, newestMs: now - wiring.marginMs, maxFutureMs: o.maxFutureMs, countryAlpha3: o.countryAlpha3 }));
      const publisher = nc ? new CorrectionsPublisher(nc, topology(o.prefix), o.shards) : undefined;
      const res = await backfill({
        ...wiring,
        clicks,
        dryRun,
        apply: {
          countTtlMs: o.countTtlMs,
          by,
          reason: reason ?? '',
          command: ['adagg', 'backfill', ...args].join(' '),
          publish: publisher ? (r) => publisher.publish(r) : undefined,
        },
        onProgress: progress(process.stderr),
        onRecomputeProgress: recomputeProgress(process.stderr, 'backfill'),
      });
      const summary = {
        lines,
        clicks: res.clicks,
        refused: bad.length,
        duplicates_in_input: res.duplicatesInInput,
        already_archived: res.alreadyArchived,
        written: res.written,
        dry_run: dryRun,
        batch: res.batch,
        files: res.files,
        audit_ids: res.ranges.flatMap((r) => (r.applied?.audit ? [r.applied.audit.id] : [])),
        fields_changed: res.ranges.reduce((n, r) => n + (r.applied ? r.applied.applied.length : r.run.applicable.length), 0),
      };
      if (values.json) {
        console.log(JSON.stringify({ ...summary, bad_lines: bad, ranges: res.ranges.map((r) => runJson(r.run, r.applied)) }));
      } else {
        for (const b of bad.slice(0, 50)) console.log(`${b.file}:${b.line}: ${b.code} (${b.reason}): ${b.error}`);
        if (bad.length > 50) console.log(`… ${bad.length - 50} more refused line(s) (--json lists all)`);
        for (const r of res.ranges) printRun(r.run, r.applied, (s) => console.log(s));
        console.log(
          `backfill${dryRun ? ' (dry run)' : ''}: ${formatCount(res.clicks)} click(s), ${formatCount(bad.length)} refused, ${formatCount(res.duplicatesInInput)} repeated in the input, ` +
            `${formatCount(res.alreadyArchived)} already in the archive, ${formatCount(res.written)} ${dryRun ? 'to load' : 'loaded'}; ${formatCount(summary.fields_changed)} field(s) ${dryRun ? 'would change' : 'changed'}`,
        );
      }
      return bad.length > 0 ? 3 : 0;
    } finally {
      await redis.quit().catch(() => redis.disconnect());
      await nc?.close().catch(() => undefined);
    }
  });
}
