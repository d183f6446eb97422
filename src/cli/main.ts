import { parseArgs } from 'node:util';
import { ingestFiles } from './ingest.ts';
import { runGateway, runNode } from './services.ts';
import { startAllInOne } from './start.ts';

const HELP: Record<string, string> = {
  '': `adagg: exactly-once ad-click aggregation

Usage: adagg <command> [options]

Commands:
  start     run the whole stack on this machine (runtime node + gateway; local servers unless NATS_URL/REDIS_URL)
  node      run one runtime node (actors only) joining the cluster: adagg node --id ID
  gateway   run the HTTP/WebSocket gateway alone
  ingest    send NDJSON or [AdClickEvent] log files to the gateway

Run 'adagg <command> --help' for a command's options. Configuration: environment variables (README).`,
  start: `Usage: adagg start

Runs one runtime node and the HTTP gateway (ADAGG_HTTP_PORT, default 8080). Without NATS_URL and
REDIS_URL it starts nats-server -js and redis-server (AOF) with data under ADAGG_DATA_DIR (./data).`,
  node: `Usage: adagg node --id ID

Runs one runtime node: it registers and heartbeats, takes part in the placement controller's
leader election, and runs the shard actors the placement table gives it. Needs NATS_URL (a comma
list for a cluster) and REDIS_URL. Options are the environment variables in README.

Options:
  --id ID        node id, unique in the cluster (default $ADAGG_NODE_ID or host-pid)
  -h, --help     this help`,
  gateway: `Usage: adagg gateway

Runs the HTTP/WebSocket gateway (ADAGG_HTTP_PORT, default 8080) alone. It finds shard actors through
NATS subjects, so it needs no list of nodes. Needs NATS_URL and REDIS_URL.`,
  ingest: `Usage: adagg ingest [options] FILE... ('-' or nothing reads stdin)

Reads NDJSON clicks and '[AdClickEvent] ad001, 2024-07-09 00:00:01, user-1, 207.148.22.22, USA' lines.
Log lines get click_id = hash(file identity) + byte offset, so re-running on the same file never double counts.

Options:
  --url URL          gateway base URL (default http://127.0.0.1:$ADAGG_HTTP_PORT or :8080)
  --batch N          lines per request (default 5000)
  --source-id ID     file identity for derived click_ids (default: the file's real path)
  --json             print the summary as JSON
  -h, --help         this help`,
};

async function main(argv: string[]): Promise<number> {
  const [cmd = '', ...rest] = argv;
  if (cmd === '' || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(HELP['']);
    return 0;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(HELP[cmd] ?? HELP['']);
    return HELP[cmd] ? 0 : 2;
  }
  switch (cmd) {
    case 'start':
      await startAllInOne();
      return -1;
    case 'node': {
      const { values } = parseArgs({ args: rest, options: { id: { type: 'string' } } });
      await runNode(values.id);
      return -1;
    }
    case 'gateway':
      parseArgs({ args: rest, options: {} });
      await runGateway();
      return -1;
    case 'ingest': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: { url: { type: 'string' }, batch: { type: 'string' }, 'source-id': { type: 'string' }, json: { type: 'boolean' } },
      });
      const batch = Number(values.batch ?? 5000);
      if (!Number.isInteger(batch) || batch < 1) throw new Error('--batch must be a positive integer');
      const url = values.url ?? `http://127.0.0.1:${process.env.ADAGG_HTTP_PORT ?? 8080}`;
      const sum = await ingestFiles(positionals, { url, batchLines: batch, sourceId: values['source-id'], maxAttempts: 8 });
      if (values.json) console.log(JSON.stringify(sum));
      else {
        console.log(`lines ${sum.lines}  accepted ${sum.accepted}  rejected ${sum.rejected}`);
        for (const [code, n] of Object.entries(sum.byCode)) console.log(`  ${code.padEnd(14)} ${n}`);
        for (const s of sum.samples) console.log(`  ${s.file}:${s.line}  ${s.code}  ${s.error}`);
      }
      return 0;
    }
    default:
      console.error(`unknown command '${cmd}'\n\n${HELP['']}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    const e = err as { code?: string; message?: string };
    console.error(`adagg: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}`);
    process.exit(1);
  },
);
