import { spawn } from 'node:child_process';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { actorRegistry } from '../../src/actors/index.ts';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import { compileOptions, type CompiledOptions } from '../../src/options.ts';
import { PlacementStore } from '../../src/runtime/placement/placement-store.ts';
import { desiredOwners } from '../../src/runtime/placement/planner.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { RuntimeNode } from '../../src/runtime/runtime-node.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { TEST_OPTIONS } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const SHARDS = 8;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Operator CLI end to end: two managed runtime nodes in this process, the `adagg` operator commands
 * as real child processes against the same Redis.
 */
describe('operator CLI', () => {
  let servers: TestServers;
  let opts: CompiledOptions & { natsUrl: string; redisUrl: string };
  let nodes: RuntimeNode[] = [];
  let redis: Redis;
  let store: PlacementStore;

  /** Runs `adagg ...` (node --import tsx src/cli/main.ts) with this test's REDIS_URL/ADAGG_PREFIX/ADAGG_SHARDS. */
  function adagg(...args: string[]): Promise<Run> {
    return adaggUntil(undefined, ...args);
  }

  /** Like {@link adagg}; with `interruptWhen`, sends SIGINT once the output so far satisfies it. */
  function adaggUntil(interruptWhen: ((stdout: string) => boolean) | undefined, ...args: string[]): Promise<Run> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
        cwd: ROOT,
        env: {
          ...process.env,
          REDIS_URL: servers.redisUrl,
          ADAGG_PREFIX: opts.prefix,
          ADAGG_SHARDS: String(SHARDS),
          ADAGG_JOIN_GRACE_MS: '0', // the nodes' planner option, so `rebalance` plans what their controller would
          ADAGG_LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      let interrupted = false;
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (interruptWhen && !interrupted && interruptWhen(stdout)) {
          interrupted = true;
          child.kill('SIGINT');
        }
      });
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`adagg ${args.join(' ')} timed out\n${stdout}\n${stderr}`));
      }, 60_000);
      child.once('error', reject);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
  }

  /** `adagg <args> --json`, expecting exit 0. */
  async function json(...args: string[]): Promise<any> {
    const r = await adagg(...args, '--json');
    expect(r.code, `adagg ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return JSON.parse(r.stdout);
  }

  const owner = async (shard: number): Promise<string | null> => (await store.read()).entries[shard]!.owner;
  /**
   * Every shard on the node the planner wants it on, no handoff in flight, and each owner actually
   * running it under the table's epoch.
   */
  const settled = async (): Promise<boolean> => {
    const now = Date.now();
    const [t, members] = await Promise.all([store.read(), store.nodes(now)]);
    const desired = desiredOwners(t, members, opts, now);
    return t.entries.every((e) => {
      const n = nodes.find((x) => x.id === e.owner);
      return e.movingTo === null && e.owner === desired.get(e.shard) && n !== undefined && n.running().get(e.shard) === e.epoch;
    });
  };
  const waitSettled = async (): Promise<void> => {
    let table: unknown;
    await waitFor(
      'the placement settled (every shard on its planned owner and running there)',
      async () => {
        table = (await store.read()).entries;
        return settled();
      },
      { detail: () => table },
    );
  };
  /**
   * Resolves once the controller leader has renewed its lease `n` times from now. A round starts
   * with that renewal, so after n ≥ 2 at least n - 1 whole rounds read the placement as it was at
   * the call: what a suspended controller leaves alone stays so through real rounds, not a guess
   * at their timing. (Expiry = Redis TIME + PTTL, read in one MULTI, so it has no client latency.)
   */
  const controllerRounds = async (n: number): Promise<void> => {
    const leaseExpiry = async (): Promise<number> => {
      const res = await redis.multi().time().pttl(`${opts.prefix}:controller`).exec();
      const [[, time], [, pttl]] = res as [[null, [string, string]], [null, number]];
      return Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000) + pttl;
    };
    let last = await leaseExpiry();
    let renewals = 0;
    // A renewal moves the expiry on by a round's period (500 ms) at least.
    await waitFor(
      `${n} controller rounds`,
      async () => {
        const e = await leaseExpiry();
        if (e > last + 250) renewals++;
        last = Math.max(last, e);
        return renewals >= n;
      },
      { everyMs: 50, detail: () => ({ renewals, leaseExpiresAt: new Date(last).toISOString() }) },
    );
  };
  /** A shard owned by `node` that is not pinned. */
  const shardOf = async (node: string): Promise<number> => {
    const e = (await store.read()).entries.find((x) => x.owner === node && x.pinned === null);
    if (!e) throw new Error(`${node} owns no unpinned shard`);
    return e.shard;
  };

  beforeAll(async () => {
    servers = await startTestServers();
    opts = {
      ...compileOptions({ ...TEST_OPTIONS, shards: SHARDS, joinGraceMs: 0, prefix: uniquePrefix() }),
      natsUrl: servers.natsUrl,
      redisUrl: servers.redisUrl,
    };
    nodes = [new RuntimeNode('n1', opts, { actors: actorRegistry }), new RuntimeNode('n2', opts, { actors: actorRegistry })];
    for (const n of nodes) await n.startManaged();
    redis = new Redis(servers.redisUrl, { maxRetriesPerRequest: 1 });
    store = new PlacementStore(redis, new RedisKeys(opts.prefix), { shards: SHARDS, heartbeatTimeoutMs: opts.nodeTimeoutMs });
    await waitFor('both nodes own shards and the placement is settled', async () => {
      const t = await store.read();
      return t.entries.some((e) => e.owner === 'n1') && t.entries.some((e) => e.owner === 'n2') && (await settled());
    }, { timeoutMs: 30_000, everyMs: 100 });
  });

  afterAll(async () => {
    await Promise.allSettled(nodes.map((n) => n.close()));
    redis?.disconnect();
    await servers?.stop();
  });

  it('--help for every command exits 0', async () => {
    const cmds = ['nodes', 'placement', 'move', 'pin', 'unpin', 'drain', 'rebalance', 'dev'];
    const runs = await Promise.all(cmds.map((c) => adagg(c, '--help')));
    runs.forEach((r, i) => {
      expect(r.code, cmds[i]).toBe(0);
      expect(r.stdout, cmds[i]).toContain(`Usage: adagg ${cmds[i]}`);
    });
    const top = await adagg('--help');
    expect(top.code).toBe(0);
    for (const c of cmds) expect(top.stdout).toContain(c);
  });

  it('nodes: both alive, shards from the table, the controller leader marked', async () => {
    const r = await json('nodes');
    expect(r.nodes.map((n: any) => n.id)).toEqual(['n1', 'n2']);
    for (const n of r.nodes) {
      expect(n.state).toBe('alive');
      expect(n.alive).toBe(true);
      expect(n.shards).toBeGreaterThan(0);
      expect(n.rssBytes).toBeGreaterThan(0);
      expect(n.heartbeatAgeMs).toBeLessThan(opts.nodeTimeoutMs);
      expect(n.address).toMatch(/:\d+$/);
    }
    expect(r.nodes.reduce((a: number, n: any) => a + n.shards, 0)).toBe(SHARDS);
    expect(['n1', 'n2']).toContain(r.leader);
    expect(r.nodes.filter((n: any) => n.leader).map((n: any) => n.id)).toEqual([r.leader]);

    const text = await adagg('nodes');
    expect(text.code).toBe(0);
    const [header, ...lines] = text.stdout.trimEnd().split('\n');
    expect(header!.split(/\s{2,}/)).toEqual(['NODE', 'ADDRESS', 'STATE', 'UPTIME', 'SHARDS', 'EVENTS/S', 'RSS MiB', 'LAST HEARTBEAT']);
    expect(lines.find((l) => l.startsWith(`${r.leader} *`))).toBeDefined();
    expect(lines.filter((l) => / alive /.test(l))).toHaveLength(2);
    expect(text.stdout).toMatch(/\d+\.\ds ago/);
    // Aligned: every row's STATE starts in the header's STATE column.
    const col = header!.indexOf('STATE');
    for (const l of lines.slice(0, 2)) expect(l.slice(col, col + 5)).toBe('alive');
  });

  it('placement: all shards owned, with epochs and the owner\'s stats', async () => {
    const r = await json('placement');
    expect(r.shards).toHaveLength(SHARDS);
    expect(r.suspended).toBe(false);
    for (const s of r.shards) {
      expect(['n1', 'n2']).toContain(s.owner);
      expect(s.epoch).toBeGreaterThan(0);
      expect(s.movingTo).toBeNull();
      expect(s.hotChildren).toBeNull();
      expect(s.lag).toBeTypeOf('number');
    }
    const text = await adagg('placement');
    expect(text.code).toBe(0);
    const [header, ...lines] = text.stdout.trimEnd().split('\n');
    expect(header!.split(/\s{2,}/)).toEqual(['SHARD', 'OWNER', 'EPOCH', 'EVENTS/S', 'LAG', 'WM DELAY', 'MOVING→', 'PINNED', 'HOT CHILDREN']);
    expect(lines).toHaveLength(SHARDS + 1);
    expect(lines.at(-1)).toMatch(/placement v\d+ · leader n[12] · rebalancing on/);
  });

  it('placement --watch redraws until Ctrl-C (successive tables when not a TTY, NDJSON with --json)', async () => {
    const tables = (out: string): number => out.split('\n').filter((l) => l.startsWith('SHARD  OWNER')).length;
    const r = await adaggUntil((out) => tables(out) >= 3, 'placement', '--watch', '0.2');
    expect(r.code, r.stderr).toBe(0);
    expect(tables(r.stdout)).toBeGreaterThanOrEqual(3);
    expect(r.stdout).toMatch(/^every 0\.2s · \d\d:\d\d:\d\d · Ctrl-C to stop$/m);
    expect(r.stdout).not.toContain('\x1b['); // no screen clearing into a pipe

    const j = await adaggUntil((out) => out.split('\n').length > 2, 'placement', '--json', '--watch=0.2');
    expect(j.code, j.stderr).toBe(0);
    const reports = j.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(reports.length).toBeGreaterThanOrEqual(2);
    for (const rep of reports) expect(rep.shards).toHaveLength(SHARDS);
  });

  it('move: pins the shard and hands it off (owner changes, epoch increments)', async () => {
    const shard = await shardOf('n1');
    const before = (await json('placement')).shards[shard];
    const r = await adagg('move', String(shard), 'n2', '--wait');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`shard ${shard}: pinned to n2 and asked n1 to hand it off`);
    expect(r.stdout).toMatch(new RegExp(`shard ${shard} now on n2 \\(epoch \\d+\\); handoff took \\d`));
    const after = (await json('placement')).shards[shard];
    expect(after.owner).toBe('n2');
    expect(after.pinned).toBe('n2');
    expect(after.epoch).toBe(before.epoch + 1);
    await waitFor('n2 runs the moved shard', () => nodes[1]!.running().get(shard) === after.epoch && !nodes[0]!.running().has(shard));
    // Already there: only the pin is (re)written.
    const again = await adagg('move', String(shard), 'n2');
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('already on n2');
  });

  it('move/pin refuse unknown shards and nodes with their codes; bad usage exits 2', async () => {
    const node = await adagg('move', '0', 'nope');
    expect(node.code).toBe(1);
    expect(node.stderr).toMatch(/^adagg: ADAGG_E_UNKNOWN_NODE: no node 'nope'/);
    const shard = await adagg('move', String(SHARDS), 'n1');
    expect(shard.code).toBe(1);
    expect(shard.stderr).toMatch(/^adagg: ADAGG_E_UNKNOWN_SHARD: /);
    expect((await adagg('pin', 'x', 'n1')).stderr).toContain(ErrorCode.UnknownShard);
    expect((await adagg('drain', 'nope')).stderr).toContain(ErrorCode.UnknownNode);
    const usage = await Promise.all([adagg('move', '1'), adagg('nodes', '--frobnicate'), adagg('rebalance', 'sideways'), adagg('placement', '--watch', '0')]);
    for (const u of usage) {
      expect(u.code, u.stderr).toBe(2);
      expect(u.stderr).toMatch(/Run 'adagg \w+ --help' for usage/);
    }
  });

  it('rebalance: suspend stops the controller, --dry-run plans, apply requests, resume', async () => {
    await waitSettled();
    const sus = await adagg('rebalance', 'suspend');
    expect(sus.code).toBe(0);
    expect((await json('placement')).suspended).toBe(true);

    // A pin while suspended: the controller plans a 'pin' move but does not start it.
    const pinned = await shardOf('n1');
    const pin = await adagg('pin', String(pinned), 'n2');
    expect(pin.code).toBe(0);
    expect(pin.stdout).toContain('once rebalancing is resumed');
    await controllerRounds(4);
    expect(await owner(pinned)).toBe('n1');

    const dry = await json('rebalance', '--dry-run');
    expect(dry.dryRun).toBe(true);
    expect(dry.suspended).toBe(true);
    expect(dry.actions).toContainEqual({ kind: 'move', shard: pinned, from: 'n1', to: 'n2', reason: 'pin', byController: false });
    const dryText = await adagg('rebalance', '--dry-run');
    expect(dryText.code).toBe(0);
    expect(dryText.stdout.split('\n')[0]!.split(/\s{2,}/)).toEqual(['ACTION', 'SHARD', 'FROM', 'TO', 'REASON']);
    expect(dryText.stdout).toMatch(new RegExp(`move\\s+${pinned}\\s+n1\\s+n2\\s+pin`));
    expect(dryText.stdout).toContain('dry run: nothing changed');
    expect(await owner(pinned)).toBe('n1');

    const res = await adagg('rebalance', 'resume');
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('rebalancing resumed');
    await waitFor('the controller moves the pinned shard after resume', async () => (await owner(pinned)) === 'n2', { timeoutMs: 15_000, everyMs: 100 });
    await waitSettled();

    // Explicit rebalance applies even while suspended: unpin a shard so it wants to go home.
    expect((await adagg('rebalance', 'suspend')).code).toBe(0);
    expect((await adagg('unpin', String(pinned))).code).toBe(0);
    const plan = await json('rebalance', '--dry-run');
    const home = plan.actions.find((a: any) => a.shard === pinned);
    expect(home).toMatchObject({ kind: 'move', from: 'n2', reason: 'rebalance' });
    await controllerRounds(3);
    expect(await owner(pinned)).toBe('n2'); // suspended: the controller leaves it
    const applied = await adagg('rebalance');
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toMatch(/requested [1-9]\d* handoffs?/);
    await waitFor('the requested handoff completes', async () => (await owner(pinned)) === home.to, { timeoutMs: 15_000, everyMs: 100 });
    expect((await adagg('rebalance', 'resume')).code).toBe(0);
    await waitSettled();
    const none = await adagg('rebalance', '--dry-run');
    expect(none.stdout).toContain('nothing to do');
  });

  it('drain --wait empties a node; --undo lets it take shards again', async () => {
    await waitSettled();
    // Unpin everything first: a pin to n1 would be ignored while it drains, but keep the test plain.
    for (const e of (await store.read()).entries) if (e.pinned) expect((await adagg('unpin', String(e.shard))).code).toBe(0);
    const r = await adagg('drain', 'n1', '--wait');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/n1 drained: \d+ shards? moved off in /);
    expect((await store.read()).entries.filter((e) => e.owner === 'n1')).toHaveLength(0);
    const listed = await json('nodes');
    expect(listed.nodes.find((n: any) => n.id === 'n1')).toMatchObject({ state: 'draining', shards: 0 });
    expect(listed.nodes.find((n: any) => n.id === 'n2')).toMatchObject({ state: 'alive', shards: SHARDS });
    // A draining node takes no shards: move to it is refused.
    const refused = await adagg('move', '0', 'n1');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(ErrorCode.NodeNotAlive);

    const undo = await adagg('drain', 'n1', '--undo');
    expect(undo.code).toBe(0);
    expect(undo.stdout).toContain('no longer draining');
    await waitFor('n1 gets shards back', async () => (await store.read()).entries.some((e) => e.owner === 'n1'), { timeoutMs: 15_000, everyMs: 100 });
    await waitSettled();
  });

  it('a stale version is refused with ADAGG_E_PLACEMENT_CONFLICT and changes nothing', async () => {
    await waitSettled();
    const t = await store.read();
    const e = t.entries[0]!;
    const other = e.owner === 'n1' ? 'n2' : 'n1';
    await store.pin(e.shard, other, t.version); // an operator's change: the version moves on
    const err: unknown = await store.requestMove(e.shard, other, Date.now(), t.version).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(AdaggError);
    expect((err as AdaggError).code).toBe(ErrorCode.PlacementConflict);
    expect((err as AdaggError).message).toMatch(/changed concurrently/);
    const pinErr: unknown = await store.pin(e.shard, null, t.version).catch((x: unknown) => x);
    expect((pinErr as AdaggError).code).toBe(ErrorCode.PlacementConflict);
    const now = (await store.read()).entries[0]!;
    expect(now.pinned).toBe(other); // the stale unpin did not apply
    await store.pin(e.shard, null); // clean up
  });
});
