/**
 * What the transport security tests share (transport-auth.test.ts, redis-timeouts.test.ts): a temp
 * dir of secured servers and in-process stacks on them, cleaned up together, and the credentials
 * those servers demand.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import { compileOptions, type AdaggOptions, type CompiledOptions } from '../../src/options.ts';
import type { SecureServer } from '../helpers/secure-servers.ts';
import type { TestServers } from '../helpers/servers.ts';
import { getJson, postClicks, startStack, TEST_OPTIONS, type TestStack } from '../helpers/stack.ts';
import { waitForValue } from '../helpers/wait.ts';

export const MINUTE = 60_000;
export const NATS_USER = { user: 'adagg-svc', password: 'n@ts p/w:1' };
/** The ACL deploy/README.md recommends (the prefix's keys only, no dangerous commands); test prefixes start with `t`. */
export const REDIS_USER = { name: 'adagg-svc', password: 'r3dis-p@ss', rules: ['~t*', '+@all', '-@dangerous'] };
/** Both users' credentials as options. */
export const CREDENTIALS: AdaggOptions = {
  natsUser: NATS_USER.user,
  natsPassword: NATS_USER.password,
  redisUsername: REDIS_USER.name,
  redisPassword: REDIS_USER.password,
};

/** Servers and stacks of one test file, closed together by {@link TransportRig.close}. */
export class TransportRig {
  private readonly servers: SecureServer[] = [];
  private readonly stacks: TestStack[] = [];

  private constructor(readonly dir: string) {}

  static async create(): Promise<TransportRig> {
    return new TransportRig(await mkdtemp(path.join(os.tmpdir(), 'adagg-transport-')));
  }

  /** A server that is stopped by close(). */
  async keep(s: Promise<SecureServer>): Promise<SecureServer> {
    const server = await s;
    this.servers.push(server);
    return server;
  }

  /** The in-process node + gateway on these servers (credentials in `extra` or in `urls`). */
  async stackOn(
    nats: SecureServer,
    redis: SecureServer,
    extra: AdaggOptions = {},
    urls: { natsUrl: string; redisUrl: string } = { natsUrl: nats.url, redisUrl: redis.url },
  ): Promise<TestStack> {
    const srv: TestServers = { ...urls, nats, redis, dir: this.dir, stop: () => Promise.resolve() }; // the servers outlive the stack
    const stack = await startStack({ shards: 2, ...extra }, srv);
    this.stacks.push(stack);
    return stack;
  }

  async close(): Promise<void> {
    for (const s of this.stacks) await s.close().catch(() => undefined);
    await Promise.all(this.servers.map((s) => s.stop()));
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Posts clicks a few minutes old (their minute closes at once) and waits until they are final. */
export async function ingestAndCount(stack: TestStack, ad: string, n: number): Promise<void> {
  const ts = Date.now() - 3 * MINUTE;
  const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ click_id: `${ad}-${i}`, ad_id: ad, ts: ts + i, country: 'US' }));
  const posted = await postClicks(stack.url, lines);
  expect(posted).toMatchObject({ status: 200, body: { accepted: n } });
  const from = Math.floor(ts / MINUTE) * MINUTE;
  const body = await waitForValue(
    `${n} clicks of ${ad} counted and final`,
    () => getJson(`${stack.url}/v1/ads/${ad}/aggregated_count?from=${from}&to=${from + MINUTE}`),
    (r) => r.status === 200 && r.body.count === n && r.body.minutes?.[0]?.final === true,
    { timeoutMs: 60_000, everyMs: 200 },
  );
  expect(body.body.count).toBe(n);
}

/** Options for a service start that must fail. */
export function failing(natsUrl: string, redisUrl: string, extra: AdaggOptions): CompiledOptions & { natsUrl: string; redisUrl: string } {
  return { ...compileOptions({ ...TEST_OPTIONS, prefix: `t${Date.now().toString(36)}`, ...extra }), natsUrl, redisUrl };
}

/** How long `p` takes to reject, and with what. */
export async function rejection(p: Promise<unknown>): Promise<{ ms: number; err: { code?: string; message?: string } }> {
  const t0 = Date.now();
  try {
    await p;
  } catch (err) {
    return { ms: Date.now() - t0, err: err as { code?: string; message?: string } };
  }
  throw new Error('expected a rejection');
}
