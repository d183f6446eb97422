/**
 * Faults: what a round does to the world, drawn from the round's seed, and how each is injected and
 * healed. A fault starts `atMs` after the round's load began and is healed `forMs` later: a killed
 * process is restarted, a stopped one continued, a cut link restored.
 */
import { rng } from '../helpers/click-stream.ts';
import { pace } from '../helpers/wait.ts';
import type { CutMode } from './tcp-proxy.ts';
import { NODE_IDS, type World } from './world.ts';

export const FAULT_KINDS = ['node-kill', 'node-stop', 'nats-kill', 'nats-stop', 'redis-kill', 'redis-stop', 'partition'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface Fault {
  kind: FaultKind;
  /** A node id, a NATS member name, or 'redis'. */
  target: string;
  atMs: number;
  forMs: number;
  /** For a partition: how the link is cut. */
  mode?: CutMode;
}

/** What a fault touches; two faults of one round never share a category (so NATS keeps a quorum). */
const category = (k: FaultKind): string => (k === 'partition' ? 'net' : k.split('-')[0]!);

const pickOf = <T>(rand: () => number, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const between = (rand: () => number, lo: number, hi: number): number => Math.round(lo + rand() * (hi - lo));

/** One or two faults for a round, from its seed alone (so `--seed S --rounds 1` replays it). */
export function planFaults(seed: number): Fault[] {
  const rand = rng(seed ^ 0x5bd1e995);
  const n = rand() < 0.5 ? 1 : 2;
  const out: Fault[] = [];
  while (out.length < n) {
    const kind = pickOf(rand, FAULT_KINDS);
    if (out.some((f) => category(f.kind) === category(kind))) continue;
    const target = kind.startsWith('nats') ? pickOf(rand, ['n1', 'n2', 'n3']) : kind.startsWith('redis') ? 'redis' : pickOf(rand, NODE_IDS);
    const fault: Fault = { kind, target, atMs: between(rand, 500, 5000), forMs: 0 };
    // Stops of a node range past its 3 s lease (its shards move and it comes back fenced).
    if (kind === 'node-stop') fault.forMs = between(rand, 1000, 6000);
    else if (kind === 'redis-stop' || kind === 'nats-stop') fault.forMs = between(rand, 1000, 5000);
    else if (kind === 'partition') {
      fault.forMs = between(rand, 2000, 6000);
      fault.mode = rand() < 0.5 ? 'reset' : 'blackhole';
    } else fault.forMs = between(rand, 300, 3000); // down time before the restart
    out.push(fault);
  }
  return out.sort((a, b) => a.atMs - b.atMs);
}

export function describeFault(f: Fault): string {
  return `${f.kind}${f.mode ? `(${f.mode})` : ''} ${f.target} ${(f.forMs / 1000).toFixed(1)}s`;
}

/**
 * Injects `f` at `t0 + atMs`, heals it `forMs` later, and resolves once healed (a restarted
 * process has been spawned; a restarted server answers). `say` reports each step as it happens.
 */
export async function runFault(w: World, f: Fault, t0: number, say: (s: string) => void): Promise<void> {
  const wait = t0 + f.atMs - Date.now();
  if (wait > 0) await pace(wait); // the fault's planned start
  say(`${f.kind}${f.mode ? ` (${f.mode})` : ''} ${f.target}`);
  switch (f.kind) {
    case 'node-kill': {
      await w.cluster.node(f.target).kill();
      await pace(f.forMs); // the planned down time
      w.startNode(f.target);
      say(`restart ${f.target}`);
      return;
    }
    case 'node-stop': {
      w.cluster.node(f.target).signal('SIGSTOP');
      await pace(f.forMs); // the planned pause
      w.cluster.node(f.target).signal('SIGCONT');
      say(`SIGCONT ${f.target}`);
      return;
    }
    case 'nats-kill': {
      const m = w.nats.member(f.target);
      await m.kill();
      await pace(f.forMs); // the planned down time
      await m.start();
      say(`nats ${f.target} restarted`);
      return;
    }
    case 'nats-stop': {
      const m = w.nats.member(f.target);
      m.signal('SIGSTOP');
      await pace(f.forMs); // the planned pause
      m.signal('SIGCONT');
      say(`SIGCONT nats ${f.target}`);
      return;
    }
    case 'redis-kill': {
      await w.redis.kill();
      await pace(f.forMs); // the planned down time
      await w.redis.restart();
      say('redis restarted (AOF reloaded)');
      return;
    }
    case 'redis-stop': {
      w.redis.handle.kill('SIGSTOP');
      await pace(f.forMs); // the planned pause
      w.redis.handle.kill('SIGCONT');
      say('SIGCONT redis');
      return;
    }
    case 'partition': {
      const proxies = w.proxies.get(f.target)!;
      for (const p of proxies) p.cutLink(f.mode ?? 'reset');
      await pace(f.forMs); // the planned partition
      for (const p of proxies) p.restore();
      say(`link ${f.target}↔NATS restored`);
      return;
    }
  }
}
