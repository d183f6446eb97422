import { readdir, rm, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeBatch } from '../../src/model/batch-codec.ts';
import { isControlMessage } from '../../src/model/hot-messages.ts';
import { isRiskMessage } from '../../src/model/risk-messages.ts';
import { duckConnection, sqlString } from '../../src/runtime/archive/duckdb.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { topology } from '../../src/runtime/topology.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { serviceEnv, spawnService, type ServiceProcess } from '../helpers/service-process.ts';
import { postClicks } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * The raw archive holds every click message's clicks exactly once (issue 10), across two SIGKILLs
 * of a real `adagg start` (actors and archivers in worker threads): one while the archivers'
 * DuckDB buffers hold unflushed rows, one right after a flush. The truth is read independently
 * from the stream: every click of every click-batch message, by (subject, seq, pos). Duplicates a
 * client sent (the same click_id in two requests) are raw data and stay. A too-old click reaches
 * the dead-letter files. A clean stop leaves no staged file.
 */
describe('raw archive: exactly once across SIGKILL', () => {
  let servers: TestServers;
  let dir: string;
  let svc: ServiceProcess | undefined;
  let redis: Redis | undefined;

  beforeAll(async () => {
    servers = await startTestServers();
    dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-archive-exact-'));
  });
  afterEach(async () => {
    svc?.child.kill('SIGKILL');
    if (svc) await svc.exited;
    svc = undefined;
    redis?.disconnect();
  });
  afterAll(async () => {
    await servers?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('every accepted click once (row count, (subject, seq, pos) set, click ids), dead letters archived, no staged files after a clean stop', async () => {
    const prefix = uniquePrefix();
    const archive = path.join(dir, 'archive');
    const env = serviceEnv(servers, prefix, {
      ADAGG_ARCHIVE: 'on',
      ADAGG_ARCHIVE_DIR: archive,
      // Files by size only (the timer never fires during the test): the buffers hold rows at a kill.
      ADAGG_ARCHIVE_FILE_CLICKS: '600',
      ADAGG_ARCHIVE_FLUSH_MS: '600000',
      ADAGG_WORKERS: '2',
      ADAGG_NODE_TIMEOUT_MS: '2000',
      ADAGG_HEARTBEAT_INTERVAL_MS: '400',
    });
    redis = new Redis(servers.redisUrl);
    const keys = new RedisKeys(prefix);
    const units = ['a-s0', 'a-s1', 'a-s2', 'a-s3'];
    const progress = async (): Promise<Array<{ seq: number; files: number }>> =>
      Promise.all(units.map(async (u) => redis!.hgetall(keys.archive(u)).then((h) => ({ seq: Number(h.seq ?? 0), files: Number(h.files ?? 0) }))));

    const accepted = new Set<string>();
    const now = Date.now();
    let n = 0;
    const post = async (batches: number, size = 200): Promise<void> => {
      for (let b = 0; b < batches; b++) {
        const lines: string[] = [];
        for (let i = 0; i < size; i++) {
          const id = `c${n++}`;
          lines.push(JSON.stringify({ click_id: id, ad_id: `ad${n % 37}`, ts: now - (n % 50) * 100, country: n % 2 ? 'US' : 'DE' }));
        }
        const r = await postClicks(svc!.url, lines);
        expect(r.status).toBe(200);
        expect(r.body.accepted).toBe(size);
        for (const l of lines) accepted.add((JSON.parse(l) as { click_id: string }).click_id);
      }
    };
    const kill = async (): Promise<void> => {
      svc!.child.kill('SIGKILL');
      await svc!.exited;
      svc = undefined;
    };

    // 1. 3,200 clicks (~800 per shard): each shard archiver flushes once at 600 rows and buffers the rest. SIGKILL.
    svc = await spawnService(env);
    await post(16);
    await waitFor('every shard archiver committed a file', async () => (await progress()).every((p) => p.files > 0), { timeoutMs: 30_000 });
    await kill();

    // 2. Restart; more clicks, client duplicates (ids sent again in other requests) and a too-old click; SIGKILL right after a flush.
    svc = await spawnService(env);
    const before = (await progress()).reduce((s, p) => s + p.files, 0);
    await post(10);
    const dupLines = ['c5', 'c17', 'c3300'].map((id) => JSON.stringify({ click_id: id, ad_id: 'ad-dup', ts: now, country: 'US' }));
    expect((await postClicks(svc.url, dupLines)).body.accepted).toBe(3);
    const old = JSON.stringify({ click_id: 'too-old-1', ad_id: 'ad1', ts: now - 3 * 3600_000 });
    expect((await postClicks(svc.url, [old])).body.rejected).toHaveLength(1);
    await waitFor('a flush after the restart', async () => (await progress()).reduce((s, p) => s + p.files, 0) > before, { timeoutMs: 30_000, everyMs: 5 });
    await kill();

    // 3. Restart, a last few clicks, then a clean stop: the final flush writes everything left.
    svc = await spawnService(env);
    await post(3);
    svc.child.kill('SIGTERM');
    expect(await svc.exited).toBe(0);
    svc = undefined;

    const staged = await readdir(path.join(archive, '_staging'), { recursive: true }).catch(() => []);
    expect(staged.filter((f) => f.includes('.tmp-'))).toEqual([]);

    const truth = await streamTruth(servers.natsUrl, prefix);
    const conn = await duckConnection();
    try {
      const rows = (
        await conn.runAndReadAll(`SELECT subject, seq, pos, click_id FROM read_parquet(${sqlString(path.join(archive, 'raw', '**', '*.parquet'))})`)
      ).getRowObjects();
      const keysSeen = rows.map((r) => `${String(r.subject)}|${String(r.seq)}|${String(r.pos)}`);
      expect(new Set(keysSeen).size, 'no (subject, seq, pos) twice').toBe(keysSeen.length);
      expect(rows.length, 'one row per click in the stream').toBe(truth.size);
      expect(keysSeen.filter((k) => !truth.has(k)), 'no row that is not in the stream').toEqual([]);
      const ids = rows.map((r) => String(r.click_id));
      const idSet = new Set(ids);
      expect([...accepted].filter((id) => !idSet.has(id)), 'every accepted click id archived').toEqual([]);
      expect(ids.filter((id) => id === 'c5')).toHaveLength(2);
      const letters = (
        await conn.runAndReadAll(`SELECT reason, click_id FROM read_parquet(${sqlString(path.join(archive, 'dead-letters', '**', '*.parquet'))})`)
      ).getRowObjects();
      expect(letters.some((l) => l.reason === 'too_old')).toBe(true);
    } finally {
      conn.closeSync();
    }
  });
});

/** Every click of every click-batch message in the clicks stream, as `subject|seq|pos`. */
async function streamTruth(natsUrl: string, prefix: string): Promise<Set<string>> {
  const topo = topology(prefix);
  const nc = await connect({ servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    const last = (await jsm.streams.info(topo.clicksStream)).state.last_seq;
    const c = await jetstream(nc).consumers.get(topo.clicksStream, { deliver_policy: DeliverPolicy.All });
    const out = new Set<string>();
    const msgs = await c.consume({ max_messages: 1000 });
    for await (const m of msgs) {
      const fwd = m.headers?.get('Nats-Msg-Id').startsWith('fwd-') ?? false;
      if (!isControlMessage(m.data) && !isRiskMessage(m.data) && !(fwd && m.subject.includes('.hot.'))) {
        const clicks = decodeBatch(m.data);
        for (let pos = 0; pos < clicks.length; pos++) out.add(`${m.subject}|${m.seq}|${pos}`);
      }
      if (m.seq >= last) break;
    }
    await msgs.close();
    return out;
  } finally {
    await nc.close();
  }
}
