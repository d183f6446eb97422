/**
 * Issue 11, defect 16: /readyz said ready while NATS was down and while Redis was frozen. It now
 * makes a real round trip to each within ADAGG_READY_TIMEOUT_MS and answers 503 naming the
 * dependency that failed, and 200 again once it is back.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type ServerHandle } from '../../src/runtime/local-servers.ts';
import { startTestServers, type TestServers } from '../helpers/servers.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { waitForValue } from '../helpers/wait.ts';

interface Ready {
  status: number;
  body: { status: string; checks: Record<string, boolean>; reasons?: Record<string, string> };
  ms: number;
}

// Each probe must answer promptly itself: a /readyz that hangs on a frozen server is no answer.
async function readyz(url: string): Promise<Ready> {
  const t0 = Date.now();
  const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: (await res.json()) as Ready['body'], ms: Date.now() - t0 };
}

// "A few seconds": the 1 s deadline plus the 0.5 s cache, with headroom for a loaded 2-core machine.
const DETECT_MS = 10_000;
const HEAL_MS = 60_000;

describe('/readyz reflects real reachability (defect 16)', () => {
  let servers: TestServers;
  let stack: TestStack;
  let restartedNats: ServerHandle | undefined;

  beforeAll(async () => {
    servers = await startTestServers();
    stack = await startStack({}, servers);
  }, 120_000);

  afterAll(async () => {
    for (const s of [servers?.redis, servers?.nats]) s?.kill('SIGCONT');
    await stack?.close();
    await restartedNats?.stop();
    await servers?.stop();
  }, 60_000);

  async function becomes(what: string, pred: (r: Ready) => boolean, timeoutMs: number): Promise<{ r: Ready; ms: number }> {
    const t0 = Date.now();
    const r = await waitForValue(what, () => readyz(stack.url), pred, { timeoutMs, everyMs: 200 });
    return { r, ms: Date.now() - t0 };
  }

  it('is ready with both servers up', async () => {
    const { r } = await becomes('ready', (x) => x.status === 200, HEAL_MS);
    expect(r.body).toMatchObject({ status: 'ready', checks: { nats: true, redis: true } });
  });

  it('goes 503 within seconds while Redis is frozen (SIGSTOP), and back to 200 after SIGCONT', async () => {
    servers.redis.kill('SIGSTOP');
    try {
      const { r, ms } = await becomes('not ready: redis', (x) => x.status === 503 && x.body.checks.redis === false, DETECT_MS);
      expect(ms).toBeLessThan(DETECT_MS);
      expect(r.ms).toBeLessThan(5_000);
      expect(r.body.status).toBe('not_ready');
      expect(r.body.checks.nats).toBe(true);
      expect(r.body.reasons?.redis).toMatch(/no reply within 1000 ms/);
    } finally {
      servers.redis.kill('SIGCONT');
    }
    await becomes('ready again after SIGCONT', (x) => x.status === 200, HEAL_MS);
  });

  it('goes 503 within seconds while NATS is frozen (SIGSTOP), and back to 200 after SIGCONT', async () => {
    servers.nats.kill('SIGSTOP');
    try {
      const { r, ms } = await becomes('not ready: nats', (x) => x.status === 503 && x.body.checks.nats === false, DETECT_MS);
      expect(ms).toBeLessThan(DETECT_MS);
      expect(r.ms).toBeLessThan(5_000);
      expect(r.body.reasons?.nats).toBeTruthy();
    } finally {
      servers.nats.kill('SIGCONT');
    }
    await becomes('ready again after SIGCONT', (x) => x.status === 200, HEAL_MS);
  });

  it('goes 503 within seconds while nats-server is stopped, and back to 200 once it runs again', async () => {
    const { port } = servers.nats;
    await servers.nats.stop();
    const { r, ms } = await becomes('not ready: nats stopped', (x) => x.status === 503 && x.body.checks.nats === false, DETECT_MS);
    expect(ms).toBeLessThan(DETECT_MS);
    expect(r.ms).toBeLessThan(5_000);
    expect(r.body.checks.redis).toBe(true);
    // Same port and store: the clients reconnect by themselves.
    restartedNats = await startNatsServer({ port, storeDir: path.join(servers.dir, 'nats') });
    await becomes('ready again with nats-server back', (x) => x.status === 200, HEAL_MS);
  });
});
