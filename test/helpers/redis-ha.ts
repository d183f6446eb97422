/**
 * A real Redis high-availability set for tests: a primary, replicas and three Sentinels
 * (`redis-server --sentinel`), each on a free loopback port with its own temp dir, never 6379.
 * Sentinel timings are short (down after `downAfterMs`), so a killed primary is replaced within
 * seconds.
 *
 * @example
 * const ha = await startRedisHa();
 * ha.kill(await ha.primaryPort(), 'SIGKILL');
 * await ha.waitForNewPrimary(oldPort);
 * await ha.stop();
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../../src/runtime/local-servers.ts';
import { waitFor } from './wait.ts';

export interface RedisHaOptions {
  /** Replicas of the primary. @default 1 */
  replicas?: number;
  /** Sentinel `down-after-milliseconds`. @default 1000 */
  downAfterMs?: number;
  /** Sentinel `failover-timeout`. @default 5000 */
  failoverTimeoutMs?: number;
}

export interface RedisHa {
  /** `host:port` of each Sentinel (for REDIS_SENTINELS). */
  readonly sentinels: string[];
  /** The master name the Sentinels monitor. */
  readonly name: string;
  /** Ports of the data servers (primary first, as started). */
  readonly dataPorts: number[];
  readonly dir: string;
  /** The primary's port as the Sentinels see it now. */
  primaryPort(): Promise<number>;
  /** Sends a signal to the data server on `port`. */
  kill(port: number, signal: NodeJS.Signals): void;
  /** Waits until the data server on `port` has exited. */
  exited(port: number): Promise<void>;
  /** Starts the data server on `port` again (same dir and AOF); the Sentinels make it a replica. */
  restart(port: number): Promise<void>;
  /** Waits until the Sentinels name a primary other than `oldPort`; returns its port. */
  waitForNewPrimary(oldPort: number, timeoutMs?: number): Promise<number>;
  /** A plain connection to the data server on `port` (the caller quits it). */
  connect(port: number): Redis;
  /** For a timeout's message: each data server's replication state and the last lines of every log. */
  diagnose(lines?: number): Promise<string>;
  stop(): Promise<void>;
}

const NAME = 'adaggha';
const live = new Set<ChildProcess>();
let hooked = false;

function run(args: string[], log: string): ChildProcess {
  if (!hooked) {
    hooked = true;
    process.on('exit', () => live.forEach((c) => c.kill('SIGKILL')));
  }
  const child = spawn('redis-server', [...args, '--logfile', log], { stdio: 'ignore' });
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** Runs `fn` on a one-off connection to the server on `port`; `fallback` when it cannot connect or `fn` fails. */
async function probe<T>(port: number, fn: (r: Redis) => Promise<T>, fallback: (err: unknown) => T): Promise<T> {
  const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return await fn(r);
  } catch (err) {
    return fallback(err);
  } finally {
    r.disconnect();
  }
}

function ping(port: number): Promise<boolean> {
  return probe(port, async (r) => (await r.ping()) === 'PONG', () => false);
}

/** Replicas whose link to the primary on `port` is up (`state=online`). */
export function onlineReplicas(port: number): Promise<number> {
  return probe(port, async (r) => ((await r.info('replication')).match(/state=online/g) ?? []).length, () => 0);
}

/** The replication fields of `INFO replication` on `port` worth reading in a failure, on one line. */
function replicationSummary(port: number): Promise<string> {
  return probe(
    port,
    async (r) =>
      (await r.info('replication'))
        .split(/\r?\n/)
        .filter((l) => /^(role|master_port|master_link_status|master_sync_in_progress|connected_slaves|slave\d+):/.test(l))
        .join(' '),
    (err) => `unreachable (${(err as Error).message})`,
  );
}

/** Whether the server on `port` has AOF on and no AOF rewrite running or scheduled. */
function aofSettled(port: number): Promise<boolean> {
  return probe(
    port,
    async (r) => {
      const info = await r.info('persistence');
      return /aof_enabled:1/.test(info) && /aof_rewrite_in_progress:0/.test(info) && /aof_rewrite_scheduled:0/.test(info) && /loading:0/.test(info);
    },
    () => false,
  );
}

/**
 * Whether the replica on `replicaPort` has all the primary on `primaryPort` wrote, and has written
 * it to its AOF file (so a SIGKILL of the replica loses none of it; Redis may postpone that write
 * behind a busy fsync, after it has acknowledged the data).
 */
export async function caughtUpOnDisk(replicaPort: number, primaryPort: number): Promise<boolean> {
  const open = (port: number) => {
    const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 });
    r.on('error', () => undefined);
    return r;
  };
  const [p, r] = [open(primaryPort), open(replicaPort)];
  try {
    await Promise.all([p.connect(), r.connect()]);
    const want = Number(/master_repl_offset:(\d+)/.exec(await p.info('replication'))?.[1] ?? NaN);
    const [repl, persistence] = await Promise.all([r.info('replication'), r.info('persistence')]);
    const have = Number(/slave_repl_offset:(\d+)/.exec(repl)?.[1] ?? -1);
    return have >= want && /aof_buffer_length:0\b/.test(persistence);
  } catch {
    return false;
  } finally {
    p.disconnect();
    r.disconnect();
  }
}

async function sentinelCall<T>(port: number, ...args: Array<string | number>): Promise<T> {
  const r = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, connectTimeout: 1000, lazyConnect: true });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return (await r.call('SENTINEL', ...args)) as T;
  } finally {
    r.disconnect();
  }
}

/** Starts the set and waits until every Sentinel knows the replicas and the other Sentinels. */
export async function startRedisHa(opts: RedisHaOptions = {}): Promise<RedisHa> {
  const replicas = opts.replicas ?? 1;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-redis-ha-'));
  const procs = new Map<number, ChildProcess>();
  const dataArgs = new Map<number, string[]>();
  const sentinelProcs: ChildProcess[] = [];

  const startData = async (port: number): Promise<void> => {
    procs.set(port, run(dataArgs.get(port)!, path.join(dir, `redis-${port}.log`)));
    await waitFor(`redis-server on ${port}`, () => ping(port), { timeoutMs: 20_000, everyMs: 100 });
  };
  const dataPorts: number[] = [];
  for (let i = 0; i <= replicas; i++) {
    const port = await freePort();
    const d = path.join(dir, `data-${port}`);
    await mkdir(d, { recursive: true });
    const primary = dataPorts[0];
    dataArgs.set(port, [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', d, '--appendonly', 'yes', '--save', '',
      // A (re)joining replica syncs at once, not after the default 5 s diskless-sync delay.
      '--repl-diskless-sync-delay', '0',
      ...(primary === undefined ? [] : ['--replicaof', '127.0.0.1', String(primary)]),
    ]);
    dataPorts.push(port);
    await startData(port);
  }
  const primary = dataPorts[0]!;
  await waitFor(`${replicas} replica(s) in sync`, () => onlineReplicas(primary).then((n) => n === replicas), { timeoutMs: 30_000, everyMs: 100 });
  // A replica rebuilds its AOF after the first sync; killed before that ends, it would restart
  // without what it had acknowledged.
  for (const port of dataPorts) await waitFor(`redis-server ${port} AOF rewritten`, () => aofSettled(port), { timeoutMs: 30_000, everyMs: 100 });

  const sentinelPorts: number[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const d = path.join(dir, `sentinel-${port}`);
    await mkdir(d, { recursive: true });
    const conf = path.join(d, 'sentinel.conf');
    await writeFile(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${d}`,
        `sentinel monitor ${NAME} 127.0.0.1 ${primary} 2`,
        `sentinel down-after-milliseconds ${NAME} ${opts.downAfterMs ?? 1000}`,
        `sentinel failover-timeout ${NAME} ${opts.failoverTimeoutMs ?? 5000}`,
        `sentinel parallel-syncs ${NAME} 1`,
        '',
      ].join('\n'),
    );
    sentinelProcs.push(run([conf, '--sentinel'], path.join(d, 'sentinel.log')));
    sentinelPorts.push(port);
  }
  for (const port of sentinelPorts) {
    // Sentinels find replicas and each other through the primary (hello messages every 2 s);
    // a failover needs both.
    await waitFor(
      `sentinel ${port} sees ${replicas} replica(s) and 2 other sentinels`,
      async () => {
        try {
          const [reps, others] = await Promise.all([sentinelCall<unknown[]>(port, 'REPLICAS', NAME), sentinelCall<unknown[]>(port, 'SENTINELS', NAME)]);
          return reps.length === replicas && others.length === 2;
        } catch {
          return false;
        }
      },
      { timeoutMs: 30_000, everyMs: 250 },
    );
  }

  const primaryPort = async (): Promise<number> => {
    for (const p of sentinelPorts) {
      try {
        const addr = await sentinelCall<[string, string] | null>(p, 'GET-MASTER-ADDR-BY-NAME', NAME);
        if (addr) return Number(addr[1]);
      } catch {
        // ask the next one
      }
    }
    throw new Error('no sentinel answered');
  };

  return {
    sentinels: sentinelPorts.map((p) => `127.0.0.1:${p}`),
    name: NAME,
    dataPorts,
    dir,
    primaryPort,
    kill: (port, signal) => procs.get(port)?.kill(signal),
    exited: async (port) => {
      const c = procs.get(port);
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      await new Promise<void>((resolve) => c.once('exit', () => resolve()));
    },
    restart: async (port) => {
      const old = procs.get(port);
      if (old && old.exitCode === null && old.signalCode === null) throw new Error(`redis-server on ${port} is still running`);
      await startData(port);
    },
    waitForNewPrimary: async (oldPort, timeoutMs = 60_000) => {
      let now = oldPort;
      await waitFor(
        `the sentinels to promote a replica in place of ${oldPort}`,
        async () => {
          now = await primaryPort().catch(() => oldPort);
          return now !== oldPort;
        },
        { timeoutMs, everyMs: 100 },
      );
      // Every Sentinel on the new primary before anything else happens (the old primary's restart
      // above all): a Sentinel still on the old view could take the returning old primary for the
      // master instead of turning it into the new one's replica.
      await waitFor(
        `every sentinel naming ${now} as the primary`,
        async () => {
          const views = await Promise.all(
            sentinelPorts.map((p) => sentinelCall<[string, string] | null>(p, 'GET-MASTER-ADDR-BY-NAME', NAME).then((a) => (a ? Number(a[1]) : -1), () => -1)),
          );
          return views.every((v) => v === now);
        },
        { timeoutMs, everyMs: 100 },
      );
      return now;
    },
    connect: (port) => new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 2 }),
    diagnose: async (lines = 25) => {
      const states = await Promise.all(dataPorts.map(async (p) => `redis ${p}: ${await replicationSummary(p)}`));
      const logs = [...dataPorts.map((p) => path.join(dir, `redis-${p}.log`)), ...sentinelPorts.map((p) => path.join(dir, `sentinel-${p}`, 'sentinel.log'))];
      const tails = await Promise.all(
        logs.map(async (f) => {
          const text = await readFile(f, 'utf8').catch(() => '');
          return `--- ${path.basename(path.dirname(f))}/${path.basename(f)}\n${text.trimEnd().split('\n').slice(-lines).join('\n')}`;
        }),
      );
      return [...states, ...tails].join('\n');
    },
    stop: async () => {
      const all = [...procs.values(), ...sentinelProcs].filter((c) => c.exitCode === null && c.signalCode === null);
      await Promise.all(
        all.map(
          (c) =>
            new Promise<void>((resolve) => {
              c.once('exit', () => resolve());
              c.kill('SIGKILL');
            }),
        ),
      );
      await rm(dir, { recursive: true, force: true });
    },
  };
}
