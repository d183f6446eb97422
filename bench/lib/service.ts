/**
 * The adagg service as a child process, so the load generator and the pipeline run in separate
 * processes. It runs what `npm start` runs: the compiled `dist/cli/main.js` of a checkout that
 * builds to JavaScript (built once per bench run, see `buildService`), `node --import tsx
 * src/cli/main.ts start` for an older checkout without a build. Captures its JSON log lines, exposes its
 * pid for RSS readings, and stops it with SIGTERM (graceful drain) or SIGKILL.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../../src/runtime/local-servers.ts';
import type { Redis } from 'ioredis';
import type { Topology } from '../../src/runtime/topology.ts';
import type { Ctx } from './context.ts';
import type { AckTracker } from './publisher.ts';
import { readMetas } from './redis-state.ts';
import { deleteStream, type BenchServers } from './servers.ts';
import { sleep } from './stats.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
let defaultRoot = ROOT;

/**
 * Spawns every later service from another checkout (`--service-root DIR`, e.g. a git worktree
 * of an older commit); the bench code itself keeps running from this one.
 */
export function setServiceRoot(dir: string | undefined): void {
  const root = dir ?? ROOT;
  if (!existsSync(path.join(root, 'src/cli/main.ts'))) throw new Error(`--service-root: no src/cli/main.ts in ${root}`);
  if (!existsSync(path.join(root, 'node_modules/tsx'))) throw new Error(`--service-root: ${root} has no node_modules (ln -s ${ROOT}/node_modules ${root}/node_modules)`);
  defaultRoot = root;
}

/** The checkout services are spawned from. */
export function serviceRoot(): string {
  return defaultRoot;
}

const built = new Set<string>();

/**
 * Builds the checkout's `dist/` (what `npm start` runs) if it has a build, once per bench run;
 * returns the command line to start the service with.
 */
function serviceCommand(root: string): string[] {
  if (!existsSync(path.join(root, 'tsconfig.build.json'))) return ['--import', 'tsx', 'src/cli/main.ts', 'start'];
  if (!built.has(root)) {
    execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
    built.add(root);
  }
  return ['dist/cli/main.js', 'start'];
}

export interface ServiceOptions {
  natsUrl: string;
  redisUrl: string;
  prefix: string;
  shards: number;
  /** pino level; 'info' is needed to see 'shard actor restored'. */
  logLevel?: string;
  /** Extra env (e.g. ADAGG_SNAPSHOT_INTERVAL_MS). */
  env?: Record<string, string>;
  /** Write a V8 CPU profile of the service into this dir on graceful exit. */
  cpuProfDir?: string;
  /** Append the service's stdout/stderr to this file. */
  logFile?: string;
  readyTimeoutMs?: number;
  /** Checkout to run `src/cli/main.ts start` from. @default the --service-root, else this checkout */
  root?: string;
}

export interface LogLine {
  time: number;
  msg: string;
  [k: string]: unknown;
}

export interface Service {
  url: string;
  pid: number;
  child: ChildProcess;
  exited: Promise<number | null>;
  /** Date.now() right before spawn. */
  spawnedAt: number;
  /** Date.now() of the first 200 from /readyz. */
  readyAt: number;
  /** Parsed JSON log lines (only those with a msg). */
  logs: LogLine[];
  tail(): string;
  /** SIGTERM, wait (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<void>;
  kill(): Promise<void>;
}

export async function startService(o: ServiceOptions): Promise<Service> {
  const port = await freePort();
  const env: Record<string, string | undefined> = {
    ...process.env,
    NATS_URL: o.natsUrl,
    REDIS_URL: o.redisUrl,
    ADAGG_PREFIX: o.prefix,
    ADAGG_SHARDS: String(o.shards),
    ADAGG_HTTP_PORT: String(port),
    ADAGG_HTTP_HOST: '127.0.0.1',
    ADAGG_AUTH: 'off',
    ADAGG_IDLE_TIMEOUT_MS: '1000',
    ADAGG_LOG_LEVEL: o.logLevel ?? 'warn',
    ...o.env,
  };
  delete env.NODE_OPTIONS;
  // Node 20 refuses --cpu-prof in NODE_OPTIONS: it goes on the command line.
  const prof = o.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`] : [];
  const root = o.root ?? defaultRoot;
  const command = serviceCommand(root);
  const spawnedAt = Date.now();
  const child = spawn(process.execPath, [...prof, ...command], {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  let tail = '';
  let partial = '';
  const logStream = o.logFile ? createWriteStream(o.logFile, { flags: 'a' }) : undefined;
  child.once('exit', () => logStream?.end());
  const onData = (d: Buffer): void => {
    logStream?.write(d);
    const text = partial + d.toString();
    const lines = text.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      tail = (tail + line + '\n').slice(-20_000);
      if (line.startsWith('{')) {
        try {
          const j = JSON.parse(line) as LogLine;
          if (typeof j.msg === 'string') logs.push(j);
        } catch {
          // not a log line
        }
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', (d: Buffer) => {
    logStream?.write(d);
    tail = (tail + d.toString()).slice(-20_000);
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (o.readyTimeoutMs ?? 60_000);
  let readyAt = 0;
  for (;;) {
    const ok = await fetch(`${url}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) {
      readyAt = Date.now();
      break;
    }
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`adagg service did not become ready:\n${tail}`);
    }
    await sleep(25);
  }
  let stopping: Promise<void> | undefined;
  const svc: Service = {
    url,
    pid: child.pid ?? -1,
    child,
    exited,
    spawnedAt,
    readyAt,
    logs,
    tail: () => tail,
    stop: (graceMs = 20_000) =>
      (stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(t);
      })()),
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
  return svc;
}

/** Actor failures the service logged ('actor failed, restarting' / 'actor stopped for good'). */
export function actorFailures(svc: Service): { restarts: number; fatal: number; first: string | null } {
  let restarts = 0;
  let fatal = 0;
  let first: string | null = null;
  for (const l of svc.logs) {
    if (l.msg !== 'actor failed, restarting' && l.msg !== 'actor stopped for good') continue;
    if (l.msg === 'actor failed, restarting') restarts++;
    else fatal++;
    if (!first) {
      const err = l.err as { name?: string; message?: string; code?: string } | undefined;
      first = `${String(l.actor)}: ${err?.name ?? 'Error'}${err?.code ? ` ${err.code}` : ''}: ${err?.message ?? '?'}`;
    }
  }
  return { restarts, fatal, first };
}

/**
 * Watches progress: returns a reason to give up when actors keep failing and nothing has been
 * committed for `stallMs` (a crash loop never finishes, the bench must not wait for it).
 */
export function stallGuard(svc: Service, stallMs = 30_000): (done: number) => string | null {
  let last = -1;
  let since = Date.now();
  return (done) => {
    if (done !== last) {
      last = done;
      since = Date.now();
      return null;
    }
    const f = actorFailures(svc);
    if (f.restarts + f.fatal === 0 || Date.now() - since < stallMs) return null;
    return `service stalled: no commit progress for ${Math.round((Date.now() - since) / 1000)} s while shard actors fail (${f.restarts} restarts, ${f.fatal} stopped for good; first: ${f.first})`;
  };
}

/** Resident set size of a process in bytes (VmRSS from /proc/<pid>/status), NaN if gone. */
export function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** CPU time (user+system, ms) of a process so far, from /proc/<pid>/stat; NaN if gone. */
export function cpuMsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

export interface StatusShard {
  shard: number;
  last_seq: number;
  committed_seq: number;
  lag: number | null;
  tracked_ids: number | null;
  watermark: string | null;
}

export async function serviceStatus(url: string): Promise<StatusShard[]> {
  const res = await fetch(`${url}/v1/status`);
  const body = (await res.json()) as { shards: StatusShard[] };
  return body.shards;
}

/** Values of one Prometheus metric family from /metrics, as label string → value. */
export async function metric(url: string, name: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^(\S+?)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (m && m[1] === name) out.set(m[2] ?? '', Number(m[3]));
  }
  return out;
}

/** The service of a bench scenario: this run's servers and shards, `cfg.serviceEnv` plus `env`, a log file per prefix. */
export function startBenchService(ctx: Pick<Ctx, 'cfg' | 'servers'>, prefix: string, env: Record<string, string> = {}, more: Partial<ServiceOptions> = {}): Promise<Service> {
  const { cfg, servers } = ctx;
  return startService({
    natsUrl: servers.natsUrl,
    redisUrl: servers.redisUrl,
    prefix,
    shards: cfg.shards,
    logFile: path.join(servers.logDir, `service-${prefix}.log`),
    env: { ...cfg.serviceEnv, ...env },
    ...more,
  });
}

/**
 * drive()'s probe for a service run: the events whose shards have committed past them, whether
 * every shard committed its last published message, and the service's RSS.
 */
export function committedProbe(rd: Redis, prefix: string, shards: number, tracker: AckTracker, pid: number): () => Promise<{ done: number; complete: boolean; rss: number }> {
  return async () => {
    const metas = await readMetas(rd, prefix, shards);
    return { done: tracker.eventsThrough(metas.map((m) => m.seq)), complete: metas.every((m, s) => m.seq >= tracker.lastSeq[s]!), rss: rssOf(pid) };
  };
}

/**
 * The end of a service run (its `finally`, after the service is killed): both streams of the run's
 * prefix deleted and Redis emptied (FLUSHALL), so the next run starts from nothing.
 */
export async function clearRun(servers: Pick<BenchServers, 'nc' | 'rd'>, topo: Pick<Topology, 'clicksStream' | 'deadLetterStream'>): Promise<void> {
  await deleteStream(servers.nc, topo.clicksStream);
  await deleteStream(servers.nc, topo.deadLetterStream);
  await servers.rd.flushall();
}
