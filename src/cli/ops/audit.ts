/**
 * `adagg audit [--from T] [--to T] [--limit N] [--json]`: prints the audit log of changes to sealed
 * minutes (recompute --apply, backfill) from <ADAGG_ARCHIVE_DIR>/audit (src/runtime/archive/audit-log.ts).
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { compileOptions, optionsFromEnv } from '../../options.ts';
import { readAudit } from '../../runtime/archive/audit-log.ts';
import { UsageError } from './context.ts';
import { formatTable } from './table.ts';

export const AUDIT_HELP = `Usage: adagg audit [--from T] [--to T] [--limit N] [--json]

Prints the audit log of changes to sealed minutes (adagg recompute --apply, adagg backfill): one
record per run with who, when, why, the command and each changed field (old → new). Read from
<ADAGG_ARCHIVE_DIR>/audit/YYYY-MM.jsonl; also served at GET /v1/audit?from=&to=.

Options:
  --from T, --to T   records made in [from, to) (ISO times; default: all)
  --limit N          most records (the newest; default 100)
  --json             machine-readable output
  -h, --help         this help`;

function timeArg(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const ms = Date.parse(v);
  if (!Number.isFinite(ms)) throw new UsageError(`--${name} must be an ISO time, got '${v.slice(0, 40)}'`);
  return ms;
}

export async function auditCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { from: { type: 'string' }, to: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } } });
  const limit = values.limit === undefined ? 100 : Number(values.limit);
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > 10_000) throw new UsageError(`--limit must be an integer in 1..10000, got '${values.limit}'`);
  const opts = compileOptions(optionsFromEnv(process.env));
  const read = await readAudit(path.resolve(opts.archiveDir), { fromMs: timeArg('from', values.from), toMs: timeArg('to', values.to), limit });
  if (values.json) {
    console.log(JSON.stringify(read));
    return 0;
  }
  for (const r of read.records) {
    console.log(`${r.at}  ${r.cause}  by ${r.by}  id ${r.id}\n  reason: ${r.reason}\n  command: ${r.command}\n  range: ${r.from} → ${r.to}${r.ads ? `  ads: ${r.ads.join(', ')}` : ''}`);
    console.log(
      formatTable(
        [{ header: 'AD' }, { header: 'MINUTE' }, { header: 'DIM' }, { header: 'VALUE' }, { header: 'OLD', align: 'right' }, { header: 'NEW', align: 'right' }],
        r.changes.map((c) => [c.ad_id, c.minute, c.dim ?? '(total)', c.value ?? '', String(c.old), String(c.new)]),
      ),
    );
    if (r.changes_truncated) console.log(`  … ${r.changes_total - r.changes.length} more change(s) (--json)`);
  }
  console.log(`${read.records.length} record(s)${read.truncated ? ' (older ones left out: --limit)' : ''}`);
  return 0;
}
