/**
 * examples/embed.ts really embeds adagg: a runtime node (actors in a worker thread) and a gateway
 * in this process, on per-test servers; a posted click is counted exactly once.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbedded, type Embedded } from '../../examples/embed.ts';
import { ErrorCode } from '../../src/index.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { waitForValue } from '../helpers/wait.ts';

const MINUTE = 60_000;

describe('examples/embed.ts', () => {
  let servers: TestServers;
  let app: Embedded;

  beforeAll(async () => {
    servers = await startTestServers();
    app = await startEmbedded(servers.natsUrl, servers.redisUrl, {
      prefix: uniquePrefix(),
      shards: 2,
      workers: 1,
      httpPort: 0,
      httpHost: '127.0.0.1',
      auth: 'off',
      idleTimeoutMs: 1000,
      allowedLatenessMs: 2000,
      snapshotIntervalMs: 300,
      tickIntervalMs: 100,
      archiveDir: path.join(servers.dir, 'archive'),
      archive: 'off',
    });
  });

  afterAll(async () => {
    await app?.close();
    await servers?.stop();
  });

  it('becomes ready, ingests a click and answers its count', async () => {
    await waitForValue('readyz 200', () => fetch(`${app.url}/readyz`).then((r) => r.status), (s) => s === 200, { everyMs: 100 });
    const ts = Date.now();
    const res = await fetch(`${app.url}/v1/clicks`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: `${JSON.stringify({ click_id: 'embed-1', ad_id: 'ad-embed', ts, country: 'US' })}\n`,
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ accepted: 1, rejected: [] });

    const from = Math.floor(ts / MINUTE) * MINUTE;
    const query = `${app.url}/v1/ads/ad-embed/aggregated_count?from=${from}&to=${from + MINUTE}&country=US`;
    const body = await waitForValue(
      'the click counted',
      () => fetch(query).then((r) => r.json() as Promise<{ ad_id?: string; count?: number }>),
      (b) => b.count !== 0 && b.count !== undefined,
      { everyMs: 100 },
    );
    expect(body).toMatchObject({ ad_id: 'ad-embed', count: 1 });
  });

  it('refuses a bad option by name before connecting', async () => {
    await expect(startEmbedded(servers.natsUrl, servers.redisUrl, { shards: 0 })).rejects.toMatchObject({
      code: ErrorCode.BadOption,
      details: { option: 'shards' },
    });
  });
});
