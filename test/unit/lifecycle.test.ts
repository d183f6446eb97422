import type { NatsConnection } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { createTopNReducer, shardActors } from '../../src/actors/index.ts';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import { GatewayService } from '../../src/gateway/gateway-service.ts';
import { DEFAULTS } from '../../src/options.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { ServiceLifecycle, type CleanupStep, type Service } from '../../src/runtime/lifecycle.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { RuntimeNode } from '../../src/runtime/runtime-node.ts';
import { TopNReducerHost } from '../../src/runtime/topn-reducer-host.ts';
import { topology } from '../../src/runtime/topology.ts';

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    return err instanceof AdaggError ? err.code : 'not-adagg';
  }
  return undefined;
}

describe('ServiceLifecycle', () => {
  it('starts once: running after the body, a second start rejects with ADAGG_E_ALREADY_STARTED', async () => {
    const life = new ServiceLifecycle('svc', silentLogger);
    expect(life.state).toBe('starting');
    let runs = 0;
    await expect(life.start(() => Promise.resolve(++runs))).resolves.toBe(1);
    expect(life.state).toBe('running');
    expect(await codeOf(life.start(() => Promise.resolve(++runs)))).toBe(ErrorCode.AlreadyStarted);
    expect(runs).toBe(1);
  });

  it('refuses a concurrent second start before the first has finished', async () => {
    const life = new ServiceLifecycle('svc', silentLogger);
    let finish!: () => void;
    const first = life.start(() => new Promise<void>((r) => (finish = r)));
    expect(await codeOf(life.start(() => Promise.resolve()))).toBe(ErrorCode.AlreadyStarted);
    finish();
    await first;
    expect(life.state).toBe('running');
  });

  it('a failed start leaves it failed; close then stops it', async () => {
    const life = new ServiceLifecycle('svc', silentLogger);
    await expect(life.start(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(life.state).toBe('failed');
    await life.close(() => []);
    expect(life.state).toBe('stopped');
  });

  it('close is memoised: the steps run once, every call gets the same promise', async () => {
    const life = new ServiceLifecycle('svc', silentLogger);
    await life.start(() => Promise.resolve());
    const ran: string[] = [];
    const steps = (): CleanupStep[] => [['a', () => ran.push('a')]];
    const c1 = life.close(steps);
    expect(life.state).toBe('draining');
    const c2 = life.close(steps);
    expect(c2).toBe(c1);
    await c1;
    await c2;
    expect(ran).toEqual(['a']);
    expect(life.state).toBe('stopped');
  });

  it('close runs every step even when one fails, then rejects with the first failure', async () => {
    const life = new ServiceLifecycle('svc', silentLogger);
    await life.start(() => Promise.resolve());
    const ran: string[] = [];
    const closing = life.close(() => [
      ['a', () => ran.push('a')],
      ['b', () => Promise.reject(new Error('b failed'))],
      [
        'c',
        () => {
          throw new Error('c failed');
        },
      ],
      ['d', () => ran.push('d')],
    ]);
    await expect(closing).rejects.toThrow('b failed');
    expect(ran).toEqual(['a', 'd']);
    expect(life.state).toBe('stopped');
    await expect(life.close(() => [])).rejects.toThrow('b failed'); // the same promise
  });

  it('refuses a start after close with ADAGG_E_ILLEGAL_TRANSITION', async () => {
    const life = new ServiceLifecycle('svc', silentLogger);
    await life.close(() => []);
    let ran = false;
    expect(
      await codeOf(
        life.start(() => {
          ran = true;
          return Promise.resolve();
        }),
      ),
    ).toBe(ErrorCode.IllegalTransition);
    expect(ran).toBe(false);
    expect(life.state).toBe('stopped');
  });
});

/** A NATS connection that only records subscriptions (no server). */
function fakeNats(): { nc: NatsConnection; unsubscribed: () => number } {
  let unsubscribed = 0;
  const nc = {
    subscribe: () => ({
      unsubscribe: () => {
        unsubscribed++;
      },
    }),
  } as unknown as NatsConnection;
  return { nc, unsubscribed: () => unsubscribed };
}

describe('services share the lifecycle', () => {
  it('TopNReducerHost: start once, close idempotent', async () => {
    const { nc, unsubscribed } = fakeNats();
    const host: Service = new TopNReducerHost(nc, topology('t'), { shards: 2, depth: 10, queryTimeoutMs: 1000 }, createTopNReducer, new ManualClock(0), silentLogger);
    expect(host.state).toBe('starting');
    await host.start();
    expect(host.state).toBe('running');
    expect(await codeOf(host.start())).toBe(ErrorCode.AlreadyStarted);
    const c1 = host.close();
    expect(host.close()).toBe(c1);
    await c1;
    expect(unsubscribed()).toBe(1);
    expect(host.state).toBe('stopped');
  });

  it('RuntimeNode and GatewayService close before start without connecting, and refuse a later start', async () => {
    const urls = { natsUrl: 'nats://127.0.0.1:1', redisUrl: 'redis://127.0.0.1:1' };
    const services: Service<unknown>[] = [
      new RuntimeNode('n1', { ...DEFAULTS, ...urls }, { actors: { shardActors }, log: silentLogger }),
      new GatewayService({ ...DEFAULTS, ...urls }, { actors: { shardActors, createTopNReducer }, log: silentLogger }),
    ];
    for (const s of services) {
      const c1 = s.close();
      expect(s.close()).toBe(c1);
      await c1;
      expect(s.state).toBe('stopped');
      expect(await codeOf(s.start())).toBe(ErrorCode.IllegalTransition);
      await s[Symbol.asyncDispose]();
    }
  });
});
