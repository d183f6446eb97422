/** An in-process adagg stack (runtime node + gateway) on per-test servers, for integration tests. */
import path from 'node:path';
import { actorRegistry } from '../../src/actors/index.ts';
import { actorWorkerEntry } from '../../src/cli/services.ts';
import { GatewayService } from '../../src/gateway/gateway-service.ts';
import { compileOptions, type AdaggOptions, type CompiledOptions } from '../../src/options.ts';
import { RuntimeEvents } from '../../src/runtime/events.ts';
import { RuntimeNode } from '../../src/runtime/runtime-node.ts';
import { TEST_ARCHIVE_DIR } from './archive-dir.ts';
import { startTestServers, uniquePrefix, type TestServers } from './servers.ts';
import { waitFor } from './wait.ts';

export interface TestStack {
  servers: TestServers;
  opts: CompiledOptions & { natsUrl: string; redisUrl: string };
  node: RuntimeNode;
  gateway: GatewayService;
  url: string;
  close(): Promise<void>;
}

/**
 * Test defaults: few shards, short idle timeout and snapshot interval so minutes close fast; actors
 * on the main thread (tests reach into their hosts), unless a test asks for `workers`.
 */
export const TEST_OPTIONS: AdaggOptions = {
  shards: 4,
  workers: 0,
  idleTimeoutMs: 1000,
  allowedLatenessMs: 5000,
  snapshotIntervalMs: 300,
  tickIntervalMs: 100,
  httpPort: 0,
  httpHost: '127.0.0.1',
  // Authentication is tested on its own (test/security/); elsewhere tests call the gateway bare.
  auth: 'off',
  // Never the checkout's ./data/archive (startStack gives each stack its own folder).
  archiveDir: TEST_ARCHIVE_DIR,
  // Archivers only where a test asks for them (see test/global-setup.ts).
  archive: 'off',
};

export async function startStack(overrides: AdaggOptions = {}, servers?: TestServers): Promise<TestStack> {
  const srv = servers ?? (await startTestServers());
  const opts = {
    ...compileOptions({ ...TEST_OPTIONS, prefix: uniquePrefix(), archiveDir: path.join(srv.dir, 'archive'), ...overrides }),
    natsUrl: srv.natsUrl,
    redisUrl: srv.redisUrl,
  };
  const events = new RuntimeEvents();
  const node = new RuntimeNode('test-node', opts, { actors: actorRegistry, events, ...(opts.workers > 0 ? { workerEntry: actorWorkerEntry } : {}) });
  await node.startManaged();
  await waitFor('every shard assigned and running', () => node.running().size === opts.shards, { timeoutMs: 30_000, everyMs: 50 });
  const gateway = new GatewayService(opts, { actors: actorRegistry, events });
  const { url } = await gateway.start();
  return {
    servers: srv,
    opts,
    node,
    gateway,
    url,
    close: async () => {
      await gateway.close();
      await node.close();
      if (!servers) await srv.stop();
    },
  };
}

/** POSTs NDJSON lines to /v1/clicks and returns status and JSON body. */
export async function postClicks(url: string, lines: readonly string[], contentType = 'application/x-ndjson'): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}/v1/clicks`, { method: 'POST', headers: { 'content-type': contentType }, body: lines.join('\n') });
  return { status: res.status, body: await res.json() };
}

export async function getJson(url: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.json() };
}
