import { parseArgs } from 'node:util';
import { runDevCluster } from './dev-cluster.ts';
import { INGEST_HELP, ingestCommand } from './ingest-command.ts';
import { adoptLocalInstance } from './local-instance.ts';
import { UsageError } from './ops/context.ts';
import { drainCommand } from './ops/drain.ts';
import { moveCommand, pinCommand, unpinCommand } from './ops/move.ts';
import { nodesCommand } from './ops/nodes.ts';
import { placementCommand } from './ops/placement.ts';
import { rebalanceCommand } from './ops/rebalance.ts';
import { RECONCILE_HELP, reconcileCommand } from './ops/reconcile.ts';
import { RECOMPUTE_HELP, recomputeCommand } from './ops/recompute.ts';
import { AUDIT_HELP, auditCommand } from './ops/audit.ts';
import { BACKFILL_HELP, backfillCommand } from './ops/backfill.ts';
import { splitCommand, unsplitCommand } from './ops/split.ts';
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
  dev       run a local multi-process cluster: adagg dev --cluster

Operator commands (placement in Redis): need REDIS_URL, and ADAGG_PREFIX if the nodes use another one;
without NATS_URL and REDIS_URL they use the local 'npm start' of ./data (or ADAGG_DATA_DIR) from its
instance.json. The shard count comes from the placement table unless ADAGG_SHARDS is set:
  nodes       list the cluster's nodes: state, shards, load, last heartbeat
  placement   one row per shard: owner, epoch, events/s, lag, handoffs, pins (--watch to follow)
  move        pin a shard to a node and hand it off now: adagg move SHARD NODE [--wait]
  pin/unpin   pin a shard to a node (the controller moves it) / remove the pin
  drain       move every shard off a node: adagg drain NODE [--wait] [--undo]
  rebalance   show or request the controller's next moves; suspend/resume rebalancing
  split       split a hot ad into K child actors: adagg split AD_ID --children K [--wait] (needs NATS_URL)
  unsplit     count a split ad in its shard again: adagg unsplit AD_ID [--wait] (needs NATS_URL)
  reconcile   compare the raw archive with the stored counts of a day: adagg reconcile --day YYYY-MM-DD
  recompute   re-aggregate [from, to) from the archive, diff, --apply to sealed minutes: adagg recompute --from T --to T
  audit       print the audit log of changes to sealed minutes: adagg audit [--from T --to T]
  backfill    load clicks older than the horizon and recompute their minutes: adagg backfill FILE… | --from-dead-letters

Exit codes: 0 ok, 1 error (printed as 'adagg: CODE: message'), 2 usage, 3 'adagg ingest' rejected lines.
Run 'adagg <command> --help' for a command's options. Configuration: environment variables (docs/configuration.md).`,
  start: `Usage: adagg start

Runs one runtime node and the HTTP gateway (ADAGG_HTTP_PORT, default 8080). Without NATS_URL and
REDIS_URL it starts nats-server -js and redis-server (AOF) with data under ADAGG_DATA_DIR (./data).
With authentication on (ADAGG_AUTH, default) and no ADAGG_TOKENS_FILE it makes a dev token with
every scope (ADAGG_DATA_DIR/dev-token, reused on the next start) and prints it with a dashboard URL
that carries it. SIGHUP re-reads ADAGG_TOKENS_FILE when one is set.`,
  node: `Usage: adagg node --id ID

Runs one runtime node: it registers and heartbeats, takes part in the placement controller's
leader election, and runs the shard actors the placement table gives it. Needs NATS_URL (a comma
list for a cluster) and REDIS_URL. Options are the environment variables in docs/configuration.md.

Options:
  --id ID        node id, unique in the cluster (default $ADAGG_NODE_ID or host-pid)
  -h, --help     this help`,
  gateway: `Usage: adagg gateway

Runs the HTTP/WebSocket gateway (ADAGG_HTTP_PORT, default 8080) alone. It finds shard actors through
NATS subjects, so it needs no list of nodes. Needs NATS_URL and REDIS_URL, and ADAGG_TOKENS_FILE
(bearer token hashes and scopes; docs/security.md) unless ADAGG_AUTH=off on a loopback address.
SIGHUP re-reads ADAGG_TOKENS_FILE.`,
  ingest: INGEST_HELP,
  reconcile: RECONCILE_HELP,
  recompute: RECOMPUTE_HELP,
  audit: AUDIT_HELP,
  backfill: BACKFILL_HELP,
  dev: `Usage: adagg dev --cluster [--nodes N] [--base-port P]

Runs a multi-process cluster on this machine: 3 nats-servers as one JetStream cluster (streams R3),
one redis-server (AOF), N runtime nodes ('adagg node --id nodeK') and one gateway ('adagg gateway',
ADAGG_HTTP_PORT, default 8080) as child processes with prefixed output. Data and server logs under
ADAGG_DATA_DIR/cluster (./data/cluster). Ctrl-C or SIGTERM stops the nodes and the gateway first,
then the servers. Also: npm run cluster.

Options:
  --cluster          required (the only dev mode so far; one process: adagg start)
  --nodes N          runtime node processes (default 3)
  --base-port P      NATS client ports P..P+2, route ports P+2000..P+2002, Redis P+3
                     (default: free ports; 4301 gives the ports of deploy/nats/*.conf)
  -h, --help         this help`,
  nodes: `Usage: adagg nodes [--json]

Lists the cluster's nodes from their heartbeats in Redis: id (* marks the placement controller
leader), address (host:pid), state (alive, draining, dead: no heartbeat for ADAGG_NODE_TIMEOUT_MS;
gone: owns shards but left), uptime, shards owned (placement table), events/s, resident memory and
the age of the last heartbeat.

Options:
  --json       machine-readable output
  -h, --help   this help`,
  placement: `Usage: adagg placement [--json] [--watch [SECONDS]]

One row per shard: owner, epoch (fencing token, +1 per ownership change), events/s, stream lag
(messages), watermark delay, handoff in progress (MOVING→ target and its age), operator pin, and
hot ads' child actors (count and ad; one row per child under its parent: node, epoch, events/s,
lag). Figures come from the owner's last heartbeat.

Options:
  --json              machine-readable output (NDJSON, one report per redraw, with --watch)
  --watch [SECONDS]   redraw every SECONDS (default 2) until Ctrl-C
  -h, --help          this help`,
  move: `Usage: adagg move SHARD NODE [--wait] [--timeout SECONDS] [--json]

Pins SHARD to NODE and asks its owner to hand it off now: the owner stops consuming, commits a final
snapshot and releases the shard to NODE, which takes it under a new epoch. NODE must be a live,
non-draining node. Both changes are compare-and-set on the placement version read first; a
concurrent change fails with ADAGG_E_PLACEMENT_CONFLICT. The pin stays until 'adagg unpin SHARD'.

Options:
  --wait              wait until NODE owns the shard and print the handoff time
  --timeout SECONDS   how long --wait waits (default 30)
  --json              machine-readable output
  -h, --help          this help`,
  pin: `Usage: adagg pin SHARD NODE [--json]

Pins SHARD to NODE (live, non-draining). The controller moves it there in its normal rounds
(unless rebalancing is suspended), and keeps it there while NODE is alive. 'adagg move' does the
same and starts the handoff at once.

Options:
  --json       machine-readable output
  -h, --help   this help`,
  unpin: `Usage: adagg unpin SHARD [--json]

Removes SHARD's pin; the controller may then move it to its rendezvous owner.

Options:
  --json       machine-readable output
  -h, --help   this help`,
  drain: `Usage: adagg drain NODE [--wait] [--timeout SECONDS] [--json]
       adagg drain NODE --undo

Marks NODE draining: the controller hands all its shards off to other nodes, at most
ADAGG_MAX_MOVES_PER_ROUND at a time, and gives it no new ones. Stop the node once it owns none.

Options:
  --wait              wait until NODE owns no shard and print how long it took
  --timeout SECONDS   how long --wait waits (default 120)
  --undo              clear the draining mark
  --json              machine-readable output
  -h, --help          this help`,
  rebalance: `Usage: adagg rebalance [--dry-run] [--json]
       adagg rebalance suspend | resume

Computes the placement controller's next round (same planner and options: ADAGG_MAX_MOVES_PER_ROUND,
ADAGG_JOIN_GRACE_MS, ADAGG_MIN_NODES, ADAGG_HANDOFF_TIMEOUT_MS) and prints it: shard, from, to,
reason. Without --dry-run it requests those handoffs (compare-and-set on the placement version),
even while rebalancing is suspended. Reassigning dead nodes' shards is left to the controller.
'suspend' stops the controller from starting handoffs (rebalance, pins, drains); shards of dead
nodes are still reassigned. 'resume' turns it back on.

Options:
  --dry-run    only print the plan
  --json       machine-readable output
  -h, --help   this help`,
  split: `Usage: adagg split AD_ID --children K [--wait] [--timeout SECONDS] [--json]

Splits a hot ad: publishes a split message into the ad's shard subject (NATS_URL, ADAGG_PREFIX).
The shard applies it at that stream position, adds K child actors to the placement table
(placed like shards, preferably on other nodes) and publishes the route: publishers send the ad's
clicks to child hash(click_id) % K; the shard forwards what still reaches it. Queries keep asking
the shard, which adds the children's reported partial counts. Nothing is sent if the ad is split.
Automatic splits use ADAGG_HOT_* thresholds (docs/configuration.md).

Options:
  --children K        number of child actors, 1..64 (required)
  --wait              wait until the shard applied the split
  --timeout SECONDS   how long --wait waits (default 30)
  --json              machine-readable output
  -h, --help          this help`,
  unsplit: `Usage: adagg unsplit AD_ID [--wait] [--timeout SECONDS] [--json]

Ends a split: publishes an un-split message into the ad's shard subject. Publishers route the ad to
its shard again; the children finish their subjects, send their final counts and click ids, and
stop; the shard then counts the ad itself. Nothing is sent if the ad is not split.

Options:
  --wait              wait until every child sent its final report
  --timeout SECONDS   how long --wait waits (default 60)
  --json              machine-readable output
  -h, --help          this help`,
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
  // No NATS_URL / REDIS_URL: the servers of a local `npm start` (ADAGG_DATA_DIR/instance.json).
  if (SERVER_COMMANDS.has(cmd)) await adoptLocalInstance(process.env, { servers: true });
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
    case 'dev': {
      const { values } = parseArgs({
        args: rest,
        options: { cluster: { type: 'boolean' }, nodes: { type: 'string' }, 'base-port': { type: 'string' } },
      });
      if (!values.cluster) throw new UsageError(`'adagg dev' needs --cluster (for the single-process stack: adagg start)`);
      const nodes = intArg('--nodes', values.nodes, 1, 32);
      const basePort = intArg('--base-port', values['base-port'], 1024, 65535 - 2002);
      await runDevCluster({ ...(nodes === undefined ? {} : { nodes }), ...(basePort === undefined ? {} : { basePort }) });
      return -1;
    }
    case 'nodes':
      return nodesCommand(rest);
    case 'placement':
      return placementCommand(rest);
    case 'move':
      return moveCommand(rest);
    case 'pin':
      return pinCommand(rest);
    case 'unpin':
      return unpinCommand(rest);
    case 'drain':
      return drainCommand(rest);
    case 'rebalance':
      return rebalanceCommand(rest);
    case 'split':
      return splitCommand(rest);
    case 'unsplit':
      return unsplitCommand(rest);
    case 'reconcile':
      return reconcileCommand(rest);
    case 'recompute':
      return recomputeCommand(rest);
    case 'audit':
      return auditCommand(rest);
    case 'backfill':
      return backfillCommand(rest);
    case 'ingest':
      return ingestCommand(rest);
    default:
      console.error(`unknown command '${cmd}'\n\n${HELP['']}`);
      return 2;
  }
}

/** Commands that talk to NATS or Redis directly (operator commands, split). */
const SERVER_COMMANDS = new Set(['nodes', 'placement', 'move', 'pin', 'unpin', 'drain', 'rebalance', 'split', 'unsplit', 'reconcile', 'recompute', 'backfill']);

/** An optional integer option within [min, max], else a usage error. */
function intArg(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!(n >= min && n <= max)) throw new UsageError(`${name} must be an integer in ${min}..${max}, got '${v}'`);
  return n;
}

/** Wrong arguments: our UsageError or node:util parseArgs' ERR_PARSE_ARGS_* errors. */
function isUsageError(err: unknown): boolean {
  return err instanceof UsageError || String((err as { code?: unknown } | undefined)?.code ?? '').startsWith('ERR_PARSE_ARGS');
}

const argv = process.argv.slice(2);
main(argv).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    const e = err as { code?: string; message?: string };
    if (isUsageError(err)) {
      const cmd = argv[0] ?? '';
      console.error(`adagg: ${e.message ?? String(err)}\nRun 'adagg ${HELP[cmd] ? `${cmd} ` : ''}--help' for usage.`);
      process.exit(2);
    }
    console.error(`adagg: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}`);
    process.exit(1);
  },
);
