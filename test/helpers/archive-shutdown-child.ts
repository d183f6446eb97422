/**
 * Child process of test/integration/archive-shutdown.test.ts: runs archiver DuckDB work in a worker
 * thread (as `adagg start` does) and closes it the way the runtime does, to check that the thread
 * then ends by itself and the process exits 0, never with a native `Napi::Error` abort.
 *
 * `node --import tsx archive-shutdown-child.ts <mode>`; the parameters come from the environment
 * (SHUTDOWN_*). Modes:
 * - `buffer`: one ArchiveBuffer with rows; its close() is called while a stage (COPY … TO parquet)
 *   is in flight.
 * - `archivers`: the archivers of shard 0 (`startArchivers`) on NATS and Redis under a steady load
 *   with frequent flushes; on a `close` line on stdin (sent once the test stopped Redis), the worker
 *   closes them, then its connections, and ends.
 *
 * The main thread prints one JSON line per step (`ready`, `closed`, `exit`) and, like WorkerHosts,
 * terminates a worker that has not ended `SHUTDOWN_DEADLINE_MS` after its close began.
 */
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

interface Params {
  mode: 'buffer' | 'archivers';
  natsUrl: string;
  redisUrl: string;
  prefix: string;
  archiveDir: string;
  stopMs: number;
  redisTimeoutMs: number;
}

type Report = { type: 'ready' } | { type: 'closed'; ms: number; openConnections: number; staged?: number; error?: string };

function params(): Params {
  const env = (k: string, d = ''): string => process.env[k] ?? d;
  return {
    mode: env('SHUTDOWN_MODE', process.argv[2] ?? 'buffer') as Params['mode'],
    natsUrl: env('SHUTDOWN_NATS_URL'),
    redisUrl: env('SHUTDOWN_REDIS_URL'),
    prefix: env('SHUTDOWN_PREFIX', 'tshutdown'),
    archiveDir: env('SHUTDOWN_ARCHIVE_DIR'),
    stopMs: Number(env('SHUTDOWN_STOP_MS', '1500')),
    redisTimeoutMs: Number(env('SHUTDOWN_REDIS_TIMEOUT_MS', '60000')),
  };
}

function print(line: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(line) + '\n');
}

function main(): void {
  const p = params();
  const deadlineMs = Number(process.env.SHUTDOWN_DEADLINE_MS ?? '15000');
  const bootstrap = path.resolve(import.meta.dirname, '../../src/runtime/worker-bootstrap.mjs');
  const w = new Worker(bootstrap, { workerData: { entry: fileURLToPath(import.meta.url), params: p } });
  let terminated = false;
  let deadline: NodeJS.Timeout | undefined;
  const closeBegan = (): void => {
    deadline ??= setTimeout(() => {
      terminated = true;
      void w.terminate();
    }, deadlineMs);
  };
  const stdin = createInterface({ input: process.stdin });
  stdin.on('line', (l) => {
    if (l.trim() !== 'close') return;
    closeBegan();
    w.postMessage('close');
  });
  w.on('message', (r: Report) => {
    print(r);
    // The buffer mode closes on its own right after `ready`.
    if (r.type === 'ready' && p.mode === 'buffer') closeBegan();
  });
  w.on('error', (err) => print({ type: 'error', message: err.message }));
  w.on('exit', (code) => {
    if (deadline) clearTimeout(deadline);
    print({ type: 'exit', code, terminated });
    stdin.close();
    process.stdin.destroy();
  });
}

async function bufferMode(p: Params): Promise<void> {
  const { ArchiveBuffer, stagingDir } = await import('../../src/runtime/archive/archive-buffer.ts');
  const { openDuckConnections } = await import('../../src/runtime/archive/duckdb.ts');
  const b = await ArchiveBuffer.open('s0', 'a-s0');
  const t = Date.UTC(2026, 0, 2, 3);
  for (let seq = 1; seq <= 2000; seq++) {
    const clicks = Array.from({ length: 200 }, (_, i) => ({ click_id: `c-${seq}-${i}`, ad_id: `ad-${i % 97}`, ts: t + ((seq * 200 + i) % 7_200_000), user_id: `u${i}`, country: 'DE' }));
    b.appendClicks('x.clicks.0', seq, clicks);
  }
  const staging = stagingDir(p.archiveDir, 'a-s0');
  // Not awaited: close() must deal with the statement in flight.
  const staged = b.stage(p.archiveDir, staging, 1, 2000, 1);
  staged.catch(() => undefined);
  post({ type: 'ready' });
  // Past the hour query, into the COPY of the first file (not a sleep for synchronisation: either
  // statement in flight must be handled).
  await new Promise((r) => setTimeout(r, 30));
  const t0 = Date.now();
  await b.close();
  const outcome = await staged.then(
    (files) => ({ staged: files.length }),
    (err: unknown) => ({ error: (err as { code?: string }).code ?? String(err) }),
  );
  post({ type: 'closed', ms: Date.now() - t0, openConnections: openDuckConnections(), ...outcome });
}

async function archiversMode(p: Params): Promise<void> {
  const { compileOptions } = await import('../../src/options.ts');
  const { connectNats } = await import('../../src/runtime/nats.ts');
  const { openRedis } = await import('../../src/runtime/redis-connect.ts');
  const { topology } = await import('../../src/runtime/topology.ts');
  const { ensureStreams } = await import('../../src/runtime/streams.ts');
  const { startArchivers } = await import('../../src/runtime/archive/archivers.ts');
  const { openDuckConnections } = await import('../../src/runtime/archive/duckdb.ts');
  const { RedisKeys } = await import('../../src/runtime/redis-keys.ts');
  const { RuntimeEvents } = await import('../../src/runtime/events.ts');
  const { systemClock } = await import('../../src/runtime/clock.ts');
  const { silentLogger } = await import('../../src/runtime/logger.ts');
  const { encodeBatch } = await import('../../src/model/batch-codec.ts');
  const o = {
    ...compileOptions({
    natsUrl: p.natsUrl,
    redisUrl: p.redisUrl,
    prefix: p.prefix,
    shards: 1,
    archive: 'on',
    archiveDir: p.archiveDir,
    archiveFileClicks: 200,
    archiveFlushMs: 100,
    archiveStopMs: p.stopMs,
    redisStateTimeoutMs: p.redisTimeoutMs,
    }),
    natsUrl: p.natsUrl,
    redisUrl: p.redisUrl,
  };
  const nc = await connectNats(o, 'archive-shutdown');
  const redis = await openRedis(o, 'state');
  const topo = topology(o.prefix);
  await ensureStreams(nc, topo, { shards: 1, replicas: 1, rawRetentionMs: 3_600_000, duplicateWindowMs: 60_000 });
  const events = new RuntimeEvents();
  let committed = 0;
  events.on('archive', (e) => {
    if ((e.files ?? 0) > 0) committed++;
  });
  const sups = startArchivers(0, topo, o, { nc, redis, keys: new RedisKeys(o.prefix), clock: systemClock, log: silentLogger, events });
  // A steady load: the archivers append and flush (DuckDB COPY) all along, also while they stop.
  let n = 0;
  const load = setInterval(() => {
    const clicks = Array.from({ length: 50 }, (_, i) => ({ click_id: `c-${n}-${i}`, ad_id: `ad-${i % 13}`, ts: Date.now() }));
    n++;
    nc.publish(topo.clickSubject(0), encodeBatch(clicks));
  }, 5);
  const ready = setInterval(() => {
    if (committed < 3) return;
    clearInterval(ready);
    post({ type: 'ready' });
  }, 20);
  parentPort!.once('message', () => {
    void (async () => {
      const t0 = Date.now();
      await Promise.all(sups.map((s) => s.close()));
      const ms = Date.now() - t0;
      clearInterval(load);
      clearInterval(ready);
      redis.disconnect();
      await nc.close();
      post({ type: 'closed', ms, openConnections: openDuckConnections() });
      parentPort!.close();
    })();
  });
}

function post(r: Report): void {
  parentPort!.postMessage(r);
}

if (isMainThread) main();
else {
  const p = (workerData as { params: Params }).params;
  await (p.mode === 'buffer' ? bufferMode(p) : archiversMode(p));
}
