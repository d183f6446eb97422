import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { realisticStream, Truth } from '../helpers/click-stream.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { serviceEnv, spawnService, type ServiceProcess } from '../helpers/service-process.ts';
import { verifyAdMinutes, verifyTopN, waitAllClosed } from '../helpers/verify.ts';
import { pace, waitFor } from '../helpers/wait.ts';

/**
 * Kills the running service with SIGKILL twice while a client posts clicks (retrying failed
 * posts, as a real client does), restarts it, and checks every count against the truth:
 * no click lost, none counted twice, whatever instant the kill hit (publish, apply, commit).
 */
describe('SIGKILL mid-stream', () => {
  let servers: TestServers;
  let svc: ServiceProcess | undefined;
  const env: Record<string, string> = {};
  const stream = realisticStream({ seed: 7, events: 30_000 });
  const truth = new Truth().add(stream.clicks);

  beforeAll(async () => {
    servers = await startTestServers();
    Object.assign(env, serviceEnv(servers, uniquePrefix(), { ADAGG_SNAPSHOT_INTERVAL_MS: '200', ADAGG_SNAPSHOT_EVERY_MESSAGES: '20' }));
    svc = await spawnService(env);
  });
  afterAll(async () => {
    svc?.child.kill('SIGKILL');
    await servers?.stop();
  });

  it('counts stay exact across two SIGKILLs and restarts', async () => {
    const chunks: string[][] = [];
    for (let i = 0; i < stream.lines.length; i += 250) chunks.push(stream.lines.slice(i, i + 250));
    let posted = 0;
    let retries = 0;
    const killAt = [Math.floor(chunks.length * 0.3), Math.floor(chunks.length * 0.65)];
    const client = (async () => {
      for (const body of chunks) {
        for (;;) {
          try {
            const res = await fetch(`${svc!.url}/v1/clicks`, {
              method: 'POST',
              headers: { 'content-type': 'application/x-ndjson' },
              body: body.join('\n'),
            });
            if (res.status === 200) break;
          } catch {
            // connection refused or reset while the service is down: retry the same body
          }
          retries++;
          await pace(100); // retry backoff
        }
        posted++;
      }
    })();
    for (const at of killAt) {
      await waitFor(`chunk ${at} of ${chunks.length} posted`, () => posted >= at, { timeoutMs: 120_000, everyMs: 5 });
      // A post is in flight now (the client never pauses): kill without warning.
      svc!.child.kill('SIGKILL');
      await svc!.exited;
      svc = await spawnService(env, Number(new URL(svc!.url).port));
    }
    await client;
    expect(retries).toBeGreaterThan(0);

    const minutes = truth.minutes();
    await waitAllClosed(svc!.url, minutes.at(-1)!, 90_000);
    const mismatches = await verifyAdMinutes(svc!.url, truth, { adsForCountry: ['ad-0', 'ad-1', 'ad-2'], countries: ['US', 'FR'] });
    expect(mismatches.slice(0, 10)).toEqual([]);
    const last = minutes.at(-1)! + 1;
    expect(await verifyTopN(svc!.url, truth, [{ n: 20, window: 10, toMinute: last }])).toEqual([]);
  });
});
