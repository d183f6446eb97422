/**
 * The human block `adagg start` prints on stdout once it is ready: where everything is, and how to
 * run the `adagg` command against this instance. The ready log line carries the same facts for
 * machines.
 */
import path from 'node:path';
import type { DevAuth } from './dev-token.ts';
import { INSTANCE_FILE } from './local-instance.ts';

export interface ReadyFacts {
  /** The gateway's base URL. */
  url: string;
  natsUrl: string;
  redisUrl: string;
  dev: Pick<DevAuth, 'token' | 'readyLines'>;
  /** Which servers this process started, and the data folder when it holds one. */
  servers: { nats?: unknown; redis?: unknown; dataDir?: string };
}

/** The block, blank line before and after; `cwd` decides whether the CLI hint needs ADAGG_DATA_DIR. */
export function readyBlock(f: ReadyFacts, cwd = process.cwd()): string {
  const devLines = f.dev.readyLines(f.url);
  const lines = [
    '',
    'adagg is ready',
    `  gateway     ${f.url}   (readiness /readyz, metrics /metrics, API /openapi.json)`,
    // The dev token's lines hold the dashboard link that carries it.
    ...(devLines.length > 0 ? devLines : [`  dashboard   ${f.url}/`]),
    `  NATS_URL    ${f.natsUrl}${f.servers.nats ? '' : '   (external)'}`,
    `  REDIS_URL   ${f.redisUrl}${f.servers.redis ? '' : '   (external)'}`,
    ...(f.servers.dataDir ? [`  data        ${f.servers.dataDir}   (server data and logs, ${INSTANCE_FILE})`] : []),
    ...cliLines(f, cwd),
    'Popular ads fill once a minute has closed: about a minute after the first clicks, plus ADAGG_ALLOWED_LATENESS_MS.',
    'Ctrl-C stops it (a second Ctrl-C exits at once).',
    '',
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * How to run the operator CLI here. With a data folder the commands find this instance through
 * its instance file, from the folder's parent with no variable at all; with external servers
 * they need the URLs.
 */
function cliLines(f: ReadyFacts, cwd: string): string[] {
  const dir = f.servers.dataDir;
  if (dir === undefined) {
    const env = `NATS_URL=${f.natsUrl} REDIS_URL=${f.redisUrl}`;
    return [`  CLI         ${env} npx adagg placement`, `              npx adagg ingest --url ${f.url}${f.dev.token ? ' --token TOKEN' : ''} FILE...`];
  }
  const here = path.resolve(cwd, 'data') === dir;
  const env = here ? '' : `ADAGG_DATA_DIR=${dir} `;
  return [
    `  CLI         ${env}npx adagg placement        (shards, owners, lag; also: nodes, --help)`,
    `              ${env}npx adagg ingest FILE...   (NDJSON or [AdClickEvent] log lines)`,
    `              (run from ${cwd}: they find this instance through ${path.join(here ? 'data' : dir, INSTANCE_FILE)})`,
  ];
}
