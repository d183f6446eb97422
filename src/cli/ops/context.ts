/** What every operator command shares: options from the environment, the placement store, argument checks. */
import { AdaggError, ErrorCode } from '../../errors.ts';
import { compileOptions, optionsFromEnv, type CompiledOptions } from '../../options.ts';
import { PlacementStore } from '../../runtime/placement/placement-store.ts';
import type { PlannerOptions } from '../../runtime/placement/planner.ts';
import type { NodeView, PlacementTable } from '../../runtime/placement/types.ts';
import { openRedis, redisUrlOf } from '../../runtime/redis-connect.ts';
import { RedisKeys } from '../../runtime/redis-keys.ts';
import { instanceFile } from '../local-instance.ts';

/** A command-line mistake: main prints it with the command's help hint and exits 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface OpsContext {
  opts: CompiledOptions & { redisUrl: string };
  store: PlacementStore;
  /** The controller's planner options, from the same environment variables the nodes read. */
  planner: PlannerOptions;
  close(): Promise<void>;
}

const MAX_SHARDS = 1024;

/**
 * Connects to Redis (REDIS_URL and its credentials and TLS options; ADAGG_PREFIX and ADAGG_SHARDS as
 * the nodes use them), failing with ADAGG_E_REDIS_UNAVAILABLE when it cannot. When
 * ADAGG_SHARDS is unset the shard count is taken from the placement table, so an operator does not
 * see phantom unassigned shards; when it is set and the table has more, a warning says so.
 * `persistent` (watch mode) keeps reconnecting instead of failing fast.
 */
export async function openOps(env: NodeJS.ProcessEnv = process.env, persistent = false): Promise<OpsContext> {
  const compiled = compileOptions(optionsFromEnv(env));
  const redisUrl = redisUrlOf(compiled);
  if (!redisUrl) {
    throw new AdaggError(
      ErrorCode.BadOption,
      `REDIS_URL must be set (the Redis the runtime nodes use); with neither NATS_URL nor REDIS_URL, a running local 'npm start' is used (${instanceFile(env)})`,
    );
  }
  // Credentials, TLS and a command timeout as the nodes use them; a refused connection fails at once.
  const redis = await openRedis({ ...compiled, redisUrl }, persistent ? 'ops-watch' : 'ops');
  const keys = new RedisKeys(compiled.prefix);
  const storeOpts = (shards: number) => ({ shards, heartbeatTimeoutMs: compiled.nodeTimeoutMs });
  // How many shards the table knows: the highest entry anybody ever wrote.
  const probe = await new PlacementStore(redis, keys, storeOpts(MAX_SHARDS)).read();
  const used = probe.entries.filter((e) => e.owner !== null || e.epoch > 0 || e.pinned !== null || e.movingTo !== null);
  const tableShards = used.length > 0 ? Math.max(...used.map((e) => e.shard)) + 1 : 0;
  let shards = compiled.shards;
  if (env.ADAGG_SHARDS === undefined || env.ADAGG_SHARDS === '') {
    if (tableShards > 0) shards = tableShards;
  } else if (tableShards > shards) {
    process.stderr.write(
      `adagg: warning: the placement table of prefix '${compiled.prefix}' has ${tableShards} shards, ADAGG_SHARDS is ${shards}; showing ${shards}\n`,
    );
  }
  const opts = { ...compiled, shards, redisUrl };
  return {
    opts,
    store: new PlacementStore(redis, keys, storeOpts(shards)),
    planner: {
      maxMovesPerRound: opts.maxMovesPerRound,
      joinGraceMs: opts.joinGraceMs,
      minNodes: opts.minNodes,
      handoffTimeoutMs: opts.handoffTimeoutMs,
    },
    close: async () => {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}

/** Runs `fn` with an open context and always closes it. */
export async function withOps<T>(fn: (ctx: OpsContext) => Promise<T>, persistent = false): Promise<T> {
  const ctx = await openOps(process.env, persistent);
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

/** A shard argument: an integer in 0..shards-1, else ADAGG_E_UNKNOWN_SHARD. */
export function parseShard(arg: string, shards: number): number {
  const n = /^\d+$/.test(arg) ? Number(arg) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n >= shards) {
    throw new AdaggError(ErrorCode.UnknownShard, `no shard '${arg}': shards are 0..${shards - 1} (ADAGG_SHARDS=${shards})`, {
      details: { shard: arg, shards },
    });
  }
  return n;
}

/** A node argument: a member of the cluster, else ADAGG_E_UNKNOWN_NODE listing the known ones. */
export function findNode(id: string, nodes: readonly NodeView[]): NodeView {
  const n = nodes.find((x) => x.id === id);
  if (!n) {
    const known = nodes.map((x) => x.id).join(', ') || 'none';
    throw new AdaggError(ErrorCode.UnknownNode, `no node '${id}' in the cluster (known: ${known})`, { details: { node: id } });
  }
  return n;
}

/**
 * A node that can take shards: alive and not draining, else ADAGG_E_NODE_NOT_ALIVE (a draining node
 * is not eligible either: the controller would move the shard straight off it again).
 */
export function requireEligible(n: NodeView, now: number): void {
  if (!n.alive) {
    throw new AdaggError(ErrorCode.NodeNotAlive, `node '${n.id}' is not alive (last heartbeat ${((now - n.heartbeatAt) / 1000).toFixed(1)}s ago)`, {
      details: { node: n.id },
    });
  }
  if (n.draining) {
    throw new AdaggError(ErrorCode.NodeNotAlive, `node '${n.id}' is draining and takes no shards; undo with 'adagg drain ${n.id} --undo'`, {
      details: { node: n.id },
    });
  }
}

/** Shards owned per node, from the placement table. */
export function ownedCounts(table: PlacementTable): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of table.entries) if (e.owner !== null) out.set(e.owner, (out.get(e.owner) ?? 0) + 1);
  return out;
}

/** Exactly `n` positionals, else a usage error naming them. */
export function positionals(args: readonly string[], names: readonly string[]): string[] {
  if (args.length !== names.length) {
    const what = args.length < names.length ? `missing ${names.slice(args.length).join(' ')}` : `unexpected argument '${args[names.length]}'`;
    throw new UsageError(what);
  }
  return [...args];
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `check` every `everyMs` until it returns a value or `timeoutMs` passes; on timeout throws
 * ADAGG_E_SHARD_UNAVAILABLE with `what()` (the state it was still in).
 */
export async function waitUntil<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: () => Promise<string>, everyMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new AdaggError(ErrorCode.ShardUnavailable, `timed out after ${timeoutMs / 1000}s: ${await what()}`);
    await sleep(everyMs);
  }
}

/** `--timeout SECONDS` (a positive number) or the default. */
export function timeoutMs(arg: string | undefined, defSeconds: number): number {
  if (arg === undefined) return defSeconds * 1000;
  const s = Number(arg);
  if (!(s > 0) || !Number.isFinite(s)) throw new UsageError(`--timeout must be a positive number of seconds, got '${arg}'`);
  return s * 1000;
}
