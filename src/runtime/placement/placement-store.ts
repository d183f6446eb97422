import type { Redis } from 'ioredis';
import { AdaggError, ErrorCode } from '../../errors.ts';
import type { RedisKeys } from '../redis-keys.ts';
import { awaitReplicas } from '../redis-replicas.ts';
import type { NodeRecord, NodeView, PlacementEntry, PlacementTable, UnitEntry } from './types.ts';

/**
 * Membership and the placement table in Redis. Every ownership change runs as one Lua step that
 * also sets the shard's epoch key (the one the fenced commit checks), so the table and the fence
 * can never disagree. Operator changes carry the table version they read (compare-and-set).
 *
 * Keys: `<p>:placement` hash (`v` version, `suspended`, `s:<n>` JSON entry), `<p>:{s<n>}:epoch`,
 * `<p>:nodes` hash (id → heartbeat JSON), `<p>:drain` hash (id → since), `<p>:controller` lease.
 * Hot-ad child units: `<p>:placement:units` hash (`v`, `s:<unit>` JSON entry), `<p>:{<unit>}:epoch`;
 * the same Lua steps run on it (an entry's `shard` is then the unit id).
 *
 * With a replica policy on the connection (ADAGG_REDIS_MIN_REPLICAS), every table change returns
 * only once enough replicas have it, so an epoch is on a replica before any node uses it and a
 * failover cannot hand out the same epoch twice. Heartbeats and the controller lease are not
 * waited for: they are renewed every few seconds and a lost one only delays a decision.
 */

// ARGV[1] = expected version or '' (no check). Returns an error reply 'CONFLICT <version>'.
const CHECK_VERSION = `
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= v then
  return redis.error_reply('CONFLICT ' .. v)
end
local function entry(shard)
  local raw = redis.call('HGET', KEYS[1], 's:' .. shard)
  if raw then return cjson.decode(raw) end
  -- A hot child unit (a string id) exists only while its split does: never recreate a removed one.
  if tonumber(shard) == nil then error({ err = 'NO_UNIT ' .. shard }) end
  return { shard = tonumber(shard), owner = cjson.null, epoch = 0, movingTo = cjson.null, movingSince = cjson.null, pinned = cjson.null, since = 0 }
end
local function save(e)
  redis.call('HSET', KEYS[1], 's:' .. e.shard, cjson.encode(e))
  return redis.call('HINCRBY', KEYS[1], 'v', 1)
end
`;

/** KEYS: placement, epoch. ARGV: version, shard, to, now. New owner with a new epoch (assign / force). */
const ASSIGN_LUA = `${CHECK_VERSION}
local e = entry(ARGV[2])
local epoch = redis.call('INCR', KEYS[2])
e.owner = ARGV[3]; e.epoch = epoch; e.movingTo = cjson.null; e.movingSince = cjson.null; e.since = tonumber(ARGV[4])
save(e)
return epoch`;

/** KEYS: placement. ARGV: version, shard, to, now. Asks the owner to hand off. */
const MOVE_LUA = `${CHECK_VERSION}
local e = entry(ARGV[2])
if e.owner == cjson.null then return redis.error_reply('UNASSIGNED') end
if e.owner == ARGV[3] then return 0 end
e.movingTo = ARGV[3]; e.movingSince = tonumber(ARGV[4])
save(e)
return 1`;

/** KEYS: placement, epoch. ARGV: '', shard, from, epoch, now. The old owner completes its handoff. */
const RELEASE_LUA = `${CHECK_VERSION}
local e = entry(ARGV[2])
if e.owner ~= ARGV[3] or e.epoch ~= tonumber(ARGV[4]) or e.movingTo == cjson.null then
  return redis.error_reply('NOT_OWNER')
end
if redis.call('GET', KEYS[2]) ~= ARGV[4] then return redis.error_reply('NOT_OWNER') end
local epoch = redis.call('INCR', KEYS[2])
e.owner = e.movingTo; e.epoch = epoch; e.movingTo = cjson.null; e.movingSince = cjson.null; e.since = tonumber(ARGV[5])
save(e)
return epoch`;

/** KEYS: placement. ARGV: version, shard, node or ''. */
const PIN_LUA = `${CHECK_VERSION}
local e = entry(ARGV[2])
if ARGV[3] == '' then e.pinned = cjson.null else e.pinned = ARGV[3] end
save(e)
return 1`;

/** KEYS: placement. ARGV: version, shard. Clears a handoff whose target died. */
const CANCEL_LUA = `${CHECK_VERSION}
local e = entry(ARGV[2])
e.movingTo = cjson.null; e.movingSince = cjson.null
save(e)
return 1`;

/** KEYS: placement. ARGV: version, '0'|'1'. */
const SUSPEND_LUA = `${CHECK_VERSION}
redis.call('HSET', KEYS[1], 'suspended', ARGV[2])
return redis.call('HINCRBY', KEYS[1], 'v', 1)`;

export interface PlacementStoreOptions {
  shards: number;
  /** A node whose last heartbeat is older than this is dead. */
  heartbeatTimeoutMs: number;
}

export class PlacementStore {
  private readonly table: string;
  private readonly nodesKey: string;
  private readonly drainKey: string;
  private readonly leaderKey: string;
  private readonly unitsKey: string;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly opts: PlacementStoreOptions,
  ) {
    this.table = `${keys.prefix}:placement`;
    this.nodesKey = `${keys.prefix}:nodes`;
    this.drainKey = `${keys.prefix}:drain`;
    this.leaderKey = `${keys.prefix}:controller`;
    this.unitsKey = `${keys.prefix}:placement:units`;
    const cmds: Array<[string, string, number]> = [
      ['adaggAssign', ASSIGN_LUA, 2],
      ['adaggMove', MOVE_LUA, 1],
      ['adaggRelease', RELEASE_LUA, 2],
      ['adaggPin', PIN_LUA, 1],
      ['adaggCancel', CANCEL_LUA, 1],
      ['adaggSuspend', SUSPEND_LUA, 1],
    ];
    for (const [name, lua, numberOfKeys] of cmds) {
      if (!(name in redis)) redis.defineCommand(name, { lua, numberOfKeys });
    }
  }

  get shards(): number {
    return this.opts.shards;
  }

  async read(): Promise<PlacementTable> {
    const h = await this.redis.hgetall(this.table);
    const entries: PlacementEntry[] = [];
    for (let s = 0; s < this.opts.shards; s++) {
      const raw = h[`s:${s}`];
      entries.push(
        raw
          ? normalise(JSON.parse(raw) as PlacementEntry)
          : { shard: s, owner: null, epoch: 0, movingTo: null, movingSince: null, pinned: null, since: 0 },
      );
    }
    return { version: Number(h.v ?? 0), suspended: h.suspended === '1', entries };
  }

  async heartbeat(rec: NodeRecord): Promise<void> {
    await this.redis.hset(this.nodesKey, rec.id, JSON.stringify(rec));
  }

  async removeNode(id: string): Promise<void> {
    await this.redis.multi().hdel(this.nodesKey, id).hdel(this.drainKey, id).exec();
  }

  async nodes(now: number): Promise<NodeView[]> {
    const [recs, drains] = await Promise.all([this.redis.hgetall(this.nodesKey), this.redis.hgetall(this.drainKey)]);
    return Object.values(recs)
      .map((raw) => JSON.parse(raw) as NodeRecord)
      .map((r) => ({ ...r, alive: now - r.heartbeatAt <= this.opts.heartbeatTimeoutMs, draining: r.id in drains }))
      .sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  async setDraining(node: string, on: boolean, now: number): Promise<void> {
    if (on) await this.redis.hset(this.drainKey, node, String(now));
    else await this.redis.hdel(this.drainKey, node);
  }

  /** Takes or renews the controller lease; true when `node` is the leader. */
  async lead(node: string, ttlMs: number): Promise<boolean> {
    const ok = await this.redis.set(this.leaderKey, node, 'PX', ttlMs, 'NX');
    if (ok) return true;
    if ((await this.redis.get(this.leaderKey)) !== node) return false;
    await this.redis.pexpire(this.leaderKey, ttlMs);
    return true;
  }

  async leader(): Promise<string | null> {
    return this.redis.get(this.leaderKey);
  }

  /** Gives a shard to `to` with a new epoch (fencing the previous owner). */
  assign(shard: number, to: string, now: number, version?: number): Promise<number> {
    return this.run(() => this.redis.adaggAssign(this.table, this.keys.epoch(shard), ver(version), shard, to, now));
  }

  /** Starts a handoff: the owner stops, commits and releases to `to`. */
  requestMove(shard: number, to: string, now: number, version?: number): Promise<number> {
    return this.run(() => this.redis.adaggMove(this.table, ver(version), shard, to, now));
  }

  /** The old owner's last step of a handoff; returns the new owner's epoch. */
  release(shard: number, from: string, epoch: number, now: number): Promise<number> {
    return this.run(() => this.redis.adaggRelease(this.table, this.keys.epoch(shard), '', shard, from, epoch, now));
  }

  pin(shard: number, node: string | null, version?: number): Promise<number> {
    return this.run(() => this.redis.adaggPin(this.table, ver(version), shard, node ?? ''));
  }

  cancelMove(shard: number, version?: number): Promise<number> {
    return this.run(() => this.redis.adaggCancel(this.table, ver(version), shard));
  }

  setSuspended(on: boolean, version?: number): Promise<number> {
    return this.run(() => this.redis.adaggSuspend(this.table, ver(version), on ? '1' : '0'));
  }

  /** The hot child units (any parent), sorted by unit id. */
  async readUnits(): Promise<UnitEntry[]> {
    const h = await this.redis.hgetall(this.unitsKey);
    const out: UnitEntry[] = [];
    for (const [f, raw] of Object.entries(h)) {
      if (!f.startsWith('s:')) continue;
      const e = JSON.parse(raw) as PlacementEntry & { shard: string; parent: number; ad: string; gen: number; k: number };
      const n = normalise(e as unknown as PlacementEntry);
      out.push({ unit: String(e.shard), parent: e.parent, ad: e.ad, gen: e.gen, k: e.k, owner: n.owner, epoch: n.epoch, movingTo: n.movingTo, movingSince: n.movingSince, pinned: n.pinned, since: n.since });
    }
    return out.sort((a, b) => (a.unit < b.unit ? -1 : a.unit > b.unit ? 1 : 0));
  }

  /** Adds child units (unassigned) unless present: idempotent, a parent redoes it after a restart. */
  async addUnits(units: ReadonlyArray<Pick<UnitEntry, 'unit' | 'parent' | 'ad' | 'gen' | 'k'>>): Promise<void> {
    if (units.length === 0) return;
    const m = this.redis.multi();
    for (const u of units) {
      const e = { shard: u.unit, parent: u.parent, ad: u.ad, gen: u.gen, k: u.k, owner: null, epoch: 0, movingTo: null, movingSince: null, pinned: null, since: 0 };
      m.hsetnx(this.unitsKey, `s:${u.unit}`, JSON.stringify(e));
    }
    m.hincrby(this.unitsKey, 'v', 1);
    await m.exec();
    await awaitReplicas(this.redis, 'hot child units added');
  }

  /**
   * Removes child units (their nodes stop them) and lets their keys expire after `keepMs` (a
   * parent replaying its split within that time finds the children's state again).
   */
  async removeUnits(units: readonly string[], keepMs = 3600_000): Promise<void> {
    if (units.length === 0) return;
    const m = this.redis.multi();
    m.hdel(this.unitsKey, ...units.map((u) => `s:${u}`));
    m.hincrby(this.unitsKey, 'v', 1);
    await m.exec();
    await awaitReplicas(this.redis, 'hot child units removed');
    await this.expireUnitKeys(units, keepMs);
  }

  /** Lets removed units' keys expire (again after their last owner's final commit rewrote them). */
  async expireUnitKeys(units: readonly string[], keepMs = 3600_000): Promise<void> {
    // The state's parts (dedupe blocks, ...) are listed in the unit's parts set by every commit.
    const q = this.redis.pipeline();
    for (const u of units) q.smembers(this.keys.parts(u));
    const parts = ((await q.exec()) ?? []).map(([err, v]) => (err ? [] : (v as string[])));
    const m = this.redis.multi();
    units.forEach((u, i) => {
      for (const k of [this.keys.epoch(u), this.keys.meta(u), this.keys.snapshot(u), this.keys.parts(u), ...parts[i]!]) m.pexpire(k, keepMs);
    });
    await m.exec();
  }

  /** Gives a child unit to `to` with a new epoch (fences its previous owner). */
  assignUnit(unit: string, to: string, now: number): Promise<number> {
    return this.run(() => this.redis.adaggAssign(this.unitsKey, this.keys.epoch(unit), '', unit, to, now));
  }

  requestUnitMove(unit: string, to: string, now: number): Promise<number> {
    return this.run(() => this.redis.adaggMove(this.unitsKey, '', unit, to, now));
  }

  releaseUnit(unit: string, from: string, epoch: number, now: number): Promise<number> {
    return this.run(() => this.redis.adaggRelease(this.unitsKey, this.keys.epoch(unit), '', unit, from, epoch, now));
  }

  cancelUnitMove(unit: string): Promise<number> {
    return this.run(() => this.redis.adaggCancel(this.unitsKey, '', unit));
  }

  private async run(fn: () => Promise<number>): Promise<number> {
    try {
      const out = await fn();
      await awaitReplicas(this.redis, 'placement change');
      return out;
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      if (msg.startsWith('CONFLICT')) {
        throw new AdaggError(ErrorCode.PlacementConflict, `placement changed concurrently (now version ${msg.split(' ')[1]}); read it again and retry`, { cause: err });
      }
      if (msg.startsWith('NOT_OWNER')) throw new AdaggError(ErrorCode.Fenced, 'not the owner of the shard any more', { cause: err });
      if (msg.startsWith('UNASSIGNED')) throw new AdaggError(ErrorCode.BadParam, 'the shard has no owner yet', { cause: err });
      if (msg.includes('NO_UNIT')) throw new AdaggError(ErrorCode.BadParam, 'the hot child unit does not exist (any more)', { cause: err });
      throw err;
    }
  }
}

function ver(v: number | undefined): string {
  return v === undefined ? '' : String(v);
}

/** cjson writes null as JSON null; keep the TypeScript shape exact. */
function normalise(e: PlacementEntry): PlacementEntry {
  return {
    shard: e.shard,
    owner: e.owner ?? null,
    epoch: e.epoch ?? 0,
    movingTo: e.movingTo ?? null,
    movingSince: e.movingSince ?? null,
    pinned: e.pinned ?? null,
    since: e.since ?? 0,
  };
}

declare module 'ioredis' {
  interface RedisCommander<Context> {
    adaggAssign(...args: Array<string | number>): Promise<number>;
    adaggMove(...args: Array<string | number>): Promise<number>;
    adaggRelease(...args: Array<string | number>): Promise<number>;
    adaggPin(...args: Array<string | number>): Promise<number>;
    adaggCancel(...args: Array<string | number>): Promise<number>;
    adaggSuspend(...args: Array<string | number>): Promise<number>;
  }
}
