/**
 * Multi-process adagg clusters for integration tests: `adagg node --id ID` and `adagg gateway` as
 * real child processes (so they can be SIGKILLed / SIGSTOPped), placement read straight from Redis,
 * a retrying load client and a query poller that records availability gaps and wrong answers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { Redis } from 'ioredis';
import { PlacementStore } from '../../src/runtime/placement/placement-store.ts';
import type { PlacementTable } from '../../src/runtime/placement/types.ts';
import { freePort } from '../../src/runtime/local-servers.ts';
import { shardOf } from '../../src/model/partition.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { pace, waitFor, WaitTimeout } from './wait.ts';

export const ROOT = path.resolve(import.meta.dirname, '../..');

/** Background activities of a test (load, pollers, monitors): stopped by `stopBackground` in afterEach. */
const background = new Set<{ stop(): unknown }>();

/** Stops every load client, poller and loop still running (after a failed test). */
export async function stopBackground(): Promise<void> {
  const all = [...background];
  background.clear();
  await Promise.allSettled(all.map((b) => b.stop()));
}

/** Runs `fn` every `everyMs` until stopped; errors are kept (not thrown) so a dying cluster cannot raise unhandled rejections. */
export class Loop {
  readonly errors: string[] = [];
  private stopped = false;
  private readonly done: Promise<void>;
  constructor(fn: () => Promise<void>, everyMs: number) {
    background.add(this);
    this.done = (async () => {
      while (!this.stopped) {
        try {
          await fn();
        } catch (err) {
          if (this.errors.length < 20) this.errors.push(String(err));
        }
        await pace(everyMs); // the sampling period
      }
    })();
  }
  async stop(): Promise<void> {
    this.stopped = true;
    background.delete(this);
    await this.done;
  }
}

/** Every child spawned here; `killAllChildren` (afterAll / afterEach) and process exit SIGKILL them. */
const children = new Set<ChildProcess>();
let exitHook = false;
function track(c: ChildProcess): void {
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const ch of children) hardKill(ch);
    });
  }
  children.add(c);
  c.once('exit', () => children.delete(c));
}

function hardKill(c: ChildProcess): void {
  if (c.exitCode !== null || c.signalCode !== null) return;
  try {
    c.kill('SIGCONT'); // a stopped child still dies by SIGKILL, but be explicit
    c.kill('SIGKILL');
  } catch {
    // already gone
  }
}

/** SIGKILLs every child spawned by this module that is still running and waits for their exit. */
export async function killAllChildren(): Promise<void> {
  const waits = [...children].map((c) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r()))));
  for (const c of children) hardKill(c);
  await Promise.all(waits);
}

/** A running `adagg ...` child process with its captured output. */
export class AdaggProc {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private out = '';
  private readonly matches: Array<{ re: RegExp; lines: string[] }> = [];
  private partial = '';

  constructor(
    readonly name: string,
    args: string[],
    env: Record<string, string>,
  ) {
    this.child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(this.child);
    this.exited = new Promise((r) => this.child.once('exit', (code, signal) => r({ code, signal })));
    const onData = (d: Buffer): void => {
      const s = d.toString();
      this.out = (this.out + s).slice(-400_000);
      const text = this.partial + s;
      const lines = text.split('\n');
      this.partial = lines.pop() ?? '';
      for (const line of lines) for (const m of this.matches) if (m.re.test(line)) m.lines.push(line);
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Records (from now on) every output line matching `re`; returns the live array. */
  watch(re: RegExp): string[] {
    const m = { re, lines: [] as string[] };
    this.matches.push(m);
    return m.lines;
  }

  output(): string {
    return this.out;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.alive) this.child.kill(sig);
  }

  async kill(): Promise<void> {
    if (!this.alive) return;
    hardKill(this.child);
    await this.exited;
  }
}

export interface ClusterOptions {
  natsUrl: string;
  redisUrl: string;
  prefix: string;
  shards?: number;
  /** Extra env for every child (overrides the defaults below). */
  env?: Record<string, string>;
}

/** The env of the brief: 8 shards, 3 s node timeout, fast ticks and snapshots so minutes close quickly. */
export function clusterEnv(o: ClusterOptions): Record<string, string> {
  return {
    NATS_URL: o.natsUrl,
    REDIS_URL: o.redisUrl,
    ADAGG_PREFIX: o.prefix,
    ADAGG_LOG_LEVEL: 'warn',
    ADAGG_SHARDS: String(o.shards ?? 8),
    ADAGG_NODE_TIMEOUT_MS: '3000',
    ADAGG_HEARTBEAT_INTERVAL_MS: '500',
    ADAGG_JOIN_GRACE_MS: '0',
    ADAGG_IDLE_TIMEOUT_MS: '1000',
    ADAGG_ALLOWED_LATENESS_MS: '5000',
    ADAGG_SNAPSHOT_INTERVAL_MS: '300',
    ADAGG_TICK_INTERVAL_MS: '100',
    ADAGG_HANDOFF_TIMEOUT_MS: '5000',
    ADAGG_HTTP_HOST: '127.0.0.1',
    ADAGG_AUTH: 'off',
    // Several nodes share this host: no per-node /metrics listener unless a test asks for one.
    ADAGG_METRICS_PORT: '0',
    ...o.env,
  };
}

export interface StatusShard {
  shard: number;
  state: 'running' | 'unavailable';
  node: string | null;
  epoch: number | null;
  watermark: string | null;
  last_seq: number;
  committed_seq: number;
  lag: number | null;
}

export interface SettledCheck {
  ok: boolean;
  why: string;
  table?: PlacementTable;
  status?: StatusShard[];
}

/** Runtime nodes + one gateway as child processes, plus a Redis view of placement. */
export class ProcCluster {
  readonly env: Record<string, string>;
  readonly nodes = new Map<string, AdaggProc>();
  gateway: AdaggProc | undefined;
  url = '';
  readonly redis: Redis;
  readonly keys: RedisKeys;
  readonly placement: PlacementStore;
  readonly shards: number;

  constructor(readonly opts: ClusterOptions) {
    this.env = clusterEnv(opts);
    this.shards = opts.shards ?? 8;
    this.redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: 3 });
    this.keys = new RedisKeys(opts.prefix);
    this.placement = new PlacementStore(this.redis, this.keys, { shards: this.shards, heartbeatTimeoutMs: Number(this.env.ADAGG_NODE_TIMEOUT_MS) });
  }

  startNode(id: string, extraEnv: Record<string, string> = {}): AdaggProc {
    const p = new AdaggProc(id, ['node', '--id', id], { ...this.env, ...extraEnv });
    this.nodes.set(id, p);
    return p;
  }

  node(id: string): AdaggProc {
    const p = this.nodes.get(id);
    if (!p) throw new Error(`no node ${id}`);
    return p;
  }

  /**
   * Starts the gateway on a free port and waits for its /readyz. A port picked here can be taken
   * before the child binds it: the gateway then exits with EADDRINUSE, and it starts again on another.
   */
  async startGateway(timeoutMs = 45_000): Promise<string> {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const gw = new AdaggProc('gateway', ['gateway'], { ...this.env, ADAGG_HTTP_PORT: String(port) });
      this.gateway = gw;
      this.url = `http://127.0.0.1:${port}`;
      try {
        await waitFor(
          `${this.url}/readyz`,
          async () => {
            if (!gw.alive) throw new Error('the gateway exited');
            return fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false);
          },
          { timeoutMs, everyMs: 150 },
        );
        return this.url;
      } catch (err) {
        await gw.kill();
        if (attempt < 3 && new RegExp(`EADDRINUSE.*:${port}\\b`).test(gw.output())) continue;
        throw new Error(`gateway did not become ready (${(err as Error).message}):\n${gw.output()}`);
      }
    }
  }

  async status(): Promise<StatusShard[] | null> {
    try {
      const res = await fetch(`${this.url}/v1/status`, { signal: AbortSignal.timeout(10_000) });
      if (res.status !== 200) return null;
      return ((await res.json()) as { shards: StatusShard[] }).shards;
    } catch {
      return null;
    }
  }

  /** Owners per shard from the placement table. */
  async owners(): Promise<Map<number, string | null>> {
    const t = await this.placement.read();
    return new Map(t.entries.map((e) => [e.shard, e.owner]));
  }

  async shardsOf(node: string): Promise<number[]> {
    const t = await this.placement.read();
    return t.entries.filter((e) => e.owner === node).map((e) => e.shard);
  }

  /**
   * Polls until settled on `live`; resolves with the time it first held. A shard counts as
   * answering once one `/v1/status` sample showed it running on its table owner under the table's
   * epoch, and stays confirmed while its table entry is unchanged. (While a node is frozen its
   * queue subscriptions still take a share of the status requests, which then time out; requiring
   * every shard to answer in the same sample would measure luck, not failover.)
   */
  async waitSettled(live: Iterable<string>, timeoutMs: number, everyMs = 100): Promise<{ at: number; check: SettledCheck }> {
    const set = new Set(live);
    const confirmed = new Map<number, string>(); // shard → `${owner}@${epoch}` seen answering
    let why = 'not checked';
    let lastStatus: StatusShard[] | null = null;
    let settled: SettledCheck | undefined;
    const check = async (): Promise<boolean> => {
      try {
        const table = await this.placement.read();
        const pending = table.entries.find((e) => e.owner === null || !set.has(e.owner) || e.movingTo !== null);
        if (pending) {
          why = `shard ${pending.shard} owner ${pending.owner} moving to ${pending.movingTo}`;
          return false;
        }
        const status = await this.status();
        lastStatus = status ?? lastStatus;
        for (const st of status ?? []) {
          const e = table.entries[st.shard]!;
          if (st.state === 'running' && st.node === e.owner && st.epoch === e.epoch) confirmed.set(st.shard, `${e.owner}@${e.epoch}`);
        }
        const missing = table.entries.find((e) => confirmed.get(e.shard) !== `${e.owner}@${e.epoch}`);
        if (!missing) {
          settled = { ok: true, why: '', table, ...(status ? { status } : {}) };
          return true;
        }
        const st = status?.find((x) => x.shard === missing.shard);
        why = `shard ${missing.shard} not seen answering on ${missing.owner}@${missing.epoch} (last: ${st ? `${st.state} on ${st.node} epoch ${st.epoch}` : 'no /v1/status'})`;
      } catch (err) {
        why = String(err);
      }
      return false;
    };
    try {
      await waitFor(`cluster settled on ${[...set].join(',')}`, check, { timeoutMs, everyMs });
    } catch (err) {
      if (!(err instanceof WaitTimeout)) throw err;
      const logs = [...this.nodes].map(([id, p]) => `--- ${id} (alive ${p.alive})\n${p.output().slice(-8000)}`).join('\n');
      throw new Error(`cluster not settled on ${[...set].join(',')} within ${timeoutMs} ms: ${why}\nlast status: ${JSON.stringify(lastStatus)}\n${logs}`);
    }
    return { at: Date.now(), check: settled! };
  }

  /** The controller lease holder. */
  leader(): Promise<string | null> {
    return this.placement.leader();
  }

  /** Per shard: the epoch in the fence key and in the committed meta. */
  async epochs(): Promise<Array<{ shard: number; fence: number; meta: number; seq: number }>> {
    const p = this.redis.pipeline();
    for (let s = 0; s < this.shards; s++) {
      p.get(this.keys.epoch(s));
      p.hmget(this.keys.meta(s), 'epoch', 'seq');
    }
    const res = await p.exec();
    if (!res || res.length !== 2 * this.shards) throw new Error('epochs: pipeline failed');
    const out: Array<{ shard: number; fence: number; meta: number; seq: number }> = [];
    for (let s = 0; s < this.shards; s++) {
      const [e1, fence] = res[2 * s]! as [Error | null, string | null];
      const [e2, meta] = res[2 * s + 1]! as [Error | null, Array<string | null>];
      if (e1 || e2) throw e1 ?? e2;
      const [epoch, seq] = meta;
      out.push({ shard: s, fence: Number(fence ?? 0), meta: Number(epoch ?? 0), seq: Number(seq ?? 0) });
    }
    return out;
  }

  /** Kills every process of this cluster (SIGKILL) and closes the Redis client. */
  async close(): Promise<void> {
    await Promise.all([...this.nodes.values(), ...(this.gateway ? [this.gateway] : [])].map((p) => p.kill()));
    this.redis.disconnect();
  }
}

/**
 * Posts NDJSON chunks to the gateway one after another, retrying a failed post (non-200 or
 * network error) with the same body until it succeeds, as a real client does. `paceMs` is the
 * shortest time between the starts of two chunks, so the load lasts long enough to fail things under.
 */
export class LoadClient {
  posted = 0;
  retries = 0;
  readonly errors: string[] = [];
  /** Completion time of every successful post. */
  readonly okAt: number[] = [];
  private stopped = false;
  done: Promise<void> | undefined;

  constructor(
    private readonly url: () => string,
    readonly chunks: string[][],
    private readonly paceMs = 0,
  ) {}

  start(): this {
    background.add(this);
    this.done = this.run().finally(() => background.delete(this));
    return this;
  }

  private async run(): Promise<void> {
    for (const body of this.chunks) {
      const t0 = Date.now();
      for (;;) {
        if (this.stopped) return;
        try {
          const res = await fetch(`${this.url()}/v1/clicks`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-ndjson' },
            body: body.join('\n'),
            signal: AbortSignal.timeout(60_000),
          });
          const text = await res.text();
          if (res.status === 200) break;
          this.note(`${res.status} ${text.slice(0, 200)}`);
        } catch (err) {
          this.note(String((err as Error)?.cause ?? err));
        }
        this.retries++;
        await pace(100); // retry backoff
      }
      this.posted++;
      this.okAt.push(Date.now());
      const wait = t0 + this.paceMs - Date.now();
      if (wait > 0) await pace(wait); // the load's rate
    }
  }

  private note(e: string): void {
    if (this.errors.length < 50) this.errors.push(e);
  }

  /** Resolves once `n` chunks are posted (or the client finished). */
  async reach(n: number, timeoutMs = 120_000): Promise<void> {
    await waitFor(`${n} of ${this.chunks.length} chunks posted`, () => this.posted >= n || this.posted >= this.chunks.length || this.stopped, {
      timeoutMs,
      everyMs: 5,
      detail: () => ({ posted: this.posted, retries: this.retries, errors: this.errors.slice(-5) }),
    });
  }

  /** Longest time between successive successful posts. */
  longestGap(): number {
    let max = 0;
    for (let i = 1; i < this.okAt.length; i++) max = Math.max(max, this.okAt[i]! - this.okAt[i - 1]!);
    return max;
  }

  stop(): void {
    this.stopped = true;
  }
}

/** Splits stream lines into chunks of `size`. */
export function chunked(lines: readonly string[], size: number): string[][] {
  const out: string[][] = [];
  for (let i = 0; i < lines.length; i += size) out.push(lines.slice(i, i + size));
  return out;
}

/**
 * Asks `aggregated_count` for one ad every `everyMs` (sequentially). Records the gaps between
 * successful answers and every wrong-looking answer: a final minute whose count is lower than an
 * earlier answer for it (`violations`), or a minute that was final and is later reported
 * provisional (`reopened`).
 */
export class QueryPoller {
  ok = 0;
  failed = 0;
  readonly failures: string[] = [];
  /** A final minute answered with a count lower than an earlier final answer: a wrong count. */
  readonly violations: string[] = [];
  /** A minute answered final, later answered provisional (closed state served before it was durable). */
  readonly reopened: string[] = [];
  private readonly maxFinal = new Map<string, number>();
  private lastOkAt = 0;
  private firstOkAt = 0;
  maxGap = 0;
  maxGapAt = 0;
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly url: () => string,
    private readonly ad: string,
    private readonly fromMs: number,
    private readonly toMs: number,
    private readonly everyMs = 100,
  ) {}

  start(): this {
    background.add(this);
    this.loop = this.run();
    return this;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const t0 = Date.now();
      try {
        const res = await fetch(`${this.url()}/v1/ads/${encodeURIComponent(this.ad)}/aggregated_count?from=${this.fromMs}&to=${this.toMs}`, {
          signal: AbortSignal.timeout(20_000),
        });
        const body = (await res.json()) as { minutes?: Array<{ minute: string; count: number; final: boolean }> };
        if (res.status === 200 && body.minutes) {
          this.check(body.minutes);
          const now = Date.now();
          if (this.lastOkAt > 0 && now - this.lastOkAt > this.maxGap) {
            this.maxGap = now - this.lastOkAt;
            this.maxGapAt = this.lastOkAt;
          }
          if (this.firstOkAt === 0) this.firstOkAt = now;
          this.lastOkAt = now;
          this.ok++;
        } else {
          this.fail(`${res.status} ${JSON.stringify(body).slice(0, 200)}`);
        }
      } catch (err) {
        this.fail(String(err));
      }
      const wait = t0 + this.everyMs - Date.now();
      if (wait > 0) await pace(wait); // the polling rate
    }
  }

  private fail(why: string): void {
    this.failed++;
    if (this.failures.length < 30) this.failures.push(`${new Date().toISOString()} ${why}`);
  }

  private check(minutes: Array<{ minute: string; count: number; final: boolean }>): void {
    for (const m of minutes) {
      const prev = this.maxFinal.get(m.minute);
      if (m.final) {
        if (prev !== undefined && m.count < prev && this.violations.length < 50) {
          this.violations.push(`${new Date().toISOString()} ${this.ad} @ ${m.minute}: final ${m.count} < earlier ${prev}`);
        }
        this.maxFinal.set(m.minute, Math.max(prev ?? 0, m.count));
      } else if (prev !== undefined && this.reopened.length < 50) {
        this.reopened.push(`${new Date().toISOString()} ${this.ad} @ ${m.minute}: provisional ${m.count} after it was final (${prev})`);
      }
    }
  }

  /** Stops polling; the gap up to the stop is counted as well. */
  async stop(): Promise<void> {
    this.stopped = true;
    background.delete(this);
    await this.loop;
    if (this.lastOkAt > 0 && Date.now() - this.lastOkAt > this.maxGap) {
      this.maxGap = Date.now() - this.lastOkAt;
      this.maxGapAt = this.lastOkAt;
    }
  }
}

/** The ad with the most distinct clicks among those whose shard is in `shardSet`. */
export function hottestAdIn(truth: { byAd: Map<string, Map<number, number>> }, shardSet: Iterable<number>, shards: number): string {
  const set = new Set(shardSet);
  let best: string | undefined;
  let bestN = -1;
  for (const [ad, per] of truth.byAd) {
    if (!set.has(shardOf(ad, shards))) continue;
    let n = 0;
    for (const c of per.values()) n += c;
    if (n > bestN || (n === bestN && best !== undefined && ad < best)) {
      best = ad;
      bestN = n;
    }
  }
  if (best === undefined) throw new Error(`no ad of the stream falls in shards ${[...set].join(',')}`);
  return best;
}
