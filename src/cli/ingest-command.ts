/** `adagg ingest`: arguments, the one-shot run or `--follow`, the summary and the exit code. */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { followFiles, type FollowFileSummary } from './ingest-follow.ts';
import { EXIT_REJECTED, ingestFiles } from './ingest.ts';
import { adoptLocalInstance } from './local-instance.ts';
import { UsageError } from './ops/context.ts';

/** The help text of `adagg ingest`. */
export const INGEST_HELP = `Usage: adagg ingest [options] FILE... ('-' or nothing reads stdin)
       adagg ingest --follow [options] PATH...

Reads NDJSON clicks and '[AdClickEvent] ad001, 2024-07-09 00:00:01, user-1, 207.148.22.22, USA' lines.
Log lines get click_id = hash(file identity) + byte offset, so re-running on the same file never double counts.
Prints lines read and clicks accepted (new), duplicates (already ingested: the gateway's JetStream
dropped their batch as a repeat) and rejected, by code. Country codes in alpha-3 (USA) are stored
as alpha-2 (US) by the gateway unless ADAGG_COUNTRY_ALPHA3=keep.

With --follow it follows the paths like 'tail -F' until Ctrl-C or SIGTERM: new lines as they are
appended, rotation by rename (the old file is read to its end, then the new one from its start)
and by truncation (from offset 0). Offsets are kept in a state file, written only after the
gateway acknowledged the lines, so a restart resumes without losing or doubling a line.

Options:
  --url URL            gateway base URL (default: the local 'npm start' of ./data or ADAGG_DATA_DIR,
                       else http://127.0.0.1:$ADAGG_HTTP_PORT or :8080)
  --batch N            lines per request (default 5000)
  --source-id ID       file identity for derived click_ids (default: the file's real path; not with --follow)
  --json               print the summary as JSON
  --token TOKEN        bearer token with scope ingest (default $ADAGG_TOKEN, else, without --url,
                       the dev token of the local 'npm start', ADAGG_DATA_DIR/dev-token);
                       a token that starts with '-' goes as --token=TOKEN
  --allow-rejects      exit 0 even when lines were rejected
  --follow             follow the paths as they grow and rotate
  --state FILE         offsets file of --follow (default ADAGG_DATA_DIR/ingest-follow.json; one follower per file)
  --poll-ms MS         with --follow, look at the files at least this often (default 1000); changes
                       are also noticed at once through file system events
  --metrics-port P     with --follow, serve Prometheus metrics on GET /metrics (0: any free port)
  --metrics-host H     address of the metrics endpoint (default 127.0.0.1)
  --status-every S     with --follow, a progress line per file every S seconds on stderr (default 10; 0: none)
  -h, --help           this help

Exit codes: 0 ok, 1 error, 2 usage, ${EXIT_REJECTED} some lines were rejected (without --allow-rejects).
--follow exits 0 when stopped by a signal; its rejections are in the log and the metrics.`;

/** Runs `adagg ingest ARGS`; resolves with the exit code. */
export async function ingestCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      url: { type: 'string' },
      batch: { type: 'string' },
      'source-id': { type: 'string' },
      json: { type: 'boolean' },
      token: { type: 'string' },
      'allow-rejects': { type: 'boolean' },
      follow: { type: 'boolean' },
      state: { type: 'string' },
      'poll-ms': { type: 'string' },
      'metrics-port': { type: 'string' },
      'metrics-host': { type: 'string' },
      'status-every': { type: 'string' },
    },
  });
  const batch = intFlag('--batch', values.batch, 1, 100_000) ?? 5000;
  // No --url: the gateway (and dev token) of a local `npm start`, else the default port.
  const local = values.url === undefined ? await adoptLocalInstance(process.env, { gateway: true }) : {};
  const url = values.url ?? local.url ?? `http://127.0.0.1:${process.env.ADAGG_HTTP_PORT ?? 8080}`;
  const token = values.token ?? process.env.ADAGG_TOKEN ?? local.token;
  if (values.follow) {
    if (positionals.length === 0 || positionals.includes('-')) throw new UsageError('--follow needs file paths (not stdin)');
    if (values['source-id'] !== undefined) throw new UsageError('--source-id cannot be used with --follow (each path is its own source)');
    const ac = new AbortController();
    const stop = (): void => ac.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const sum = await followFiles(positionals, {
      url,
      token,
      batchLines: batch,
      stateFile: values.state ?? path.join(process.env.ADAGG_DATA_DIR ?? './data', 'ingest-follow.json'),
      pollIntervalMs: intFlag('--poll-ms', values['poll-ms'], 10, 3_600_000) ?? 1000,
      metricsPort: intFlag('--metrics-port', values['metrics-port'], 0, 65535),
      metricsHost: values['metrics-host'] ?? '127.0.0.1',
      statusEveryMs: (intFlag('--status-every', values['status-every'], 0, 86_400) ?? 10) * 1000,
      signal: ac.signal,
      out: process.stderr,
      onListening: (port) => process.stderr.write(`adagg ingest: metrics on http://${values['metrics-host'] ?? '127.0.0.1'}:${port}/metrics\n`),
    });
    printFollowSummary(sum, values.json === true);
    return 0;
  }
  const sum = await ingestFiles(positionals, { url, batchLines: batch, sourceId: values['source-id'], maxAttempts: 8, token });
  if (values.json) console.log(JSON.stringify(sum));
  else {
    console.log(`lines ${sum.lines}  accepted ${sum.accepted}  duplicates ${sum.duplicates}  rejected ${sum.rejected}`);
    for (const [code, n] of Object.entries(sum.byCode)) console.log(`  ${code.padEnd(14)} ${n}`);
    for (const s of sum.samples) console.log(`  ${s.file}:${s.line}  ${s.code}  ${s.error}`);
  }
  return sum.rejected > 0 && values['allow-rejects'] !== true ? EXIT_REJECTED : 0;
}

function printFollowSummary(sum: Record<string, FollowFileSummary>, json: boolean): void {
  if (json) {
    console.log(JSON.stringify(sum));
    return;
  }
  for (const [file, s] of Object.entries(sum)) {
    console.log(`${file}: read ${s.read}  accepted ${s.accepted}  duplicates ${s.duplicates}  rejected ${s.rejected}`);
    for (const [code, n] of Object.entries(s.byCode)) console.log(`  ${code.padEnd(14)} ${n}`);
  }
}

/** An optional integer flag within [min, max], else a usage error. */
function intFlag(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!(n >= min && n <= max)) throw new UsageError(`${name} must be an integer in ${min}..${max}, got '${v}'`);
  return n;
}
