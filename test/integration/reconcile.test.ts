/**
 * Reconciliation end to end (issue 10): a real stack (nats-server, redis-server) counts clicks with
 * duplicates and a too-old click; the raw archive is written from a direct read of the JetStream
 * streams exactly as the archiver writes it (layout.ts), with the progress hashes set; then
 * `adagg reconcile` (a child process) finds 0 mismatches, names an injected one and exits 1, waits
 * for and refuses an archive that is behind, and GET /v1/reconciliations/{day} serves the report.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayReconciliations } from '../../src/gateway/reconcile-schedule.ts';
import { decodeBatch } from '../../src/model/batch-codec.ts';
import type { Click } from '../../src/model/click.ts';
import { isControlMessage } from '../../src/model/hot-messages.ts';
import { shardOf } from '../../src/model/partition.ts';
import { isRiskMessage } from '../../src/model/risk-messages.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { RuntimeEvents } from '../../src/runtime/events.ts';
import { createLogger } from '../../src/runtime/logger.ts';
import { ClickProducer } from '../../src/runtime/producer.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { topology } from '../../src/runtime/topology.ts';
import { runAdagg, type CliRun } from '../helpers/adagg-cli.ts';
import { writeDeadLetterFiles, writeRawFiles, type DeadLetterRow, type RawRow } from '../helpers/archive-fixtures.ts';
import { getJson, postClicks, startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

const SHARDS = 3;
let stack: TestStack;
let nc: NatsConnection;
let jsm: JetStreamManager;
let redis: Redis;
let keys: RedisKeys;
let dir: string;
let day: string;
let lastSeq: number;
const sent = new Map<string, Click>();
let tooOldClick: Click;
/** What writeArchive wrote: raw rows and too-old letters. */
const written = { rows: 0, tooOld: [] as DeadLetterRow[] };
/** The dead-letter stream's last sequence when the archive was written. */
let dlqLast = 0;

function cli(args: string[], timeoutMs = 60_000, onDay = day): Promise<CliRun> {
  return runAdagg(['reconcile', '--day', onDay, ...args], {
    timeoutMs,
    env: {
      ...process.env,
      ADAGG_LOG_LEVEL: 'warn',
      NATS_URL: stack.servers.natsUrl,
      REDIS_URL: stack.servers.redisUrl,
      ADAGG_PREFIX: stack.opts.prefix,
      ADAGG_ARCHIVE_DIR: dir,
    },
  });
}

/** Writes the archive of everything in the clicks and dead-letter streams, as the archivers would. */
async function writeArchive(): Promise<void> {
  const topo = topology(stack.opts.prefix);
  const info = await jsm.streams.info(topo.clicksStream);
  lastSeq = info.state.last_seq;
  const byUnit = new Map<string, RawRow[]>();
  for (let seq = info.state.first_seq; seq <= lastSeq; seq++) {
    const m = await jsm.streams.getMessage(topo.clicksStream, { seq }).catch(() => null);
    if (!m || isControlMessage(m.data) || isRiskMessage(m.data)) continue;
    const shard = /\.clicks\.(\d+)$/.exec(m.subject)?.[1];
    const unit = shard === undefined ? 'hot' : `s${shard}`;
    decodeBatch(m.data).forEach((c, pos) => {
      const rows = byUnit.get(unit) ?? [];
      rows.push({ ...c, attrs: c.attrs ? JSON.stringify(c.attrs) : null, subject: m.subject, seq, pos });
      byUnit.set(unit, rows);
    });
  }
  for (const [unit, rows] of byUnit) {
    await writeRawFiles(dir, unit as `s${number}`, rows);
    written.rows += rows.length;
  }
  const dlq = await jsm.streams.info(topo.deadLetterStream);
  const letters: DeadLetterRow[] = [];
  for (let seq = dlq.state.first_seq; seq <= dlq.state.last_seq && dlq.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(topo.deadLetterStream, { seq }).catch(() => null);
    if (!m) continue;
    const l = m.json<{ reason: string; error: string; source: string; at: number; click?: Click }>();
    const src = /^(.*) seq (\d+)$/.exec(l.source);
    letters.push({ seq, reason: l.reason, error: l.error, source: l.source, at: l.at, src_unit: src?.[1] ?? null, src_seq: src ? Number(src[2]) : null, click_id: l.click?.click_id, ad_id: l.click?.ad_id, ts: l.click?.ts });
  }
  if (letters.length > 0) await writeDeadLetterFiles(dir, letters);
  written.tooOld = letters.filter((l) => l.reason === 'too_old');
  for (let s = 0; s < SHARDS; s++) await redis.hset(keys.archive(`a-s${s}`), 'seq', lastSeq, 'epoch', 1);
  dlqLast = dlq.state.last_seq;
  await redis.hset(keys.archive('a-dlq'), 'seq', dlqLast, 'epoch', 1);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-reconcile-'));
  // The archivers stay off: this test writes the archive itself, from the stream.
  stack = await startStack({ shards: SHARDS, archive: 'off', archiveDir: dir, correctionHorizonMs: 600_000 });
  nc = await connect({ servers: stack.servers.natsUrl });
  jsm = await jetstreamManager(nc);
  redis = new Redis(stack.servers.redisUrl);
  keys = new RedisKeys(stack.opts.prefix);
  // Clicks three minutes back, so their minutes close as soon as the idle watermark passes them.
  let base = Math.floor((Date.now() - 180_000) / 60_000) * 60_000;
  // All three minutes on one UTC day: near midnight, the three before it.
  const nextDay = Math.ceil((base + 1) / 86_400_000) * 86_400_000;
  if (base + 180_000 > nextDay) base = nextDay - 180_000;
  day = new Date(base).toISOString().slice(0, 10);
  const lines: string[][] = [[], [], []];
  for (let i = 0; i < 60; i++) {
    const c: Click = { click_id: `k${i}`, ad_id: `ad${i % 7}`, ts: base + (i % 3) * 60_000 + i, country: 'US' };
    sent.set(c.click_id, c);
    lines[i % 3]!.push(JSON.stringify(c));
  }
  // Duplicates: the same click ids again in later requests (other messages), one with another ts.
  lines[1]!.push(JSON.stringify(sent.get('k0')));
  lines[2]!.push(JSON.stringify(sent.get('k5')), JSON.stringify(sent.get('k0')), JSON.stringify({ ...sent.get('k4'), ts: base + 150_000 }));
  for (const l of lines) expect((await postClicks(stack.url, l)).status).toBe(200);
  // Applied before the too-old click, so each shard's watermark is near now.
  const topo = topology(stack.opts.prefix);
  await waitFor('clicks applied', async () => {
    for (let s = 0; s < SHARDS; s++) {
      const last = await jsm.streams.getMessage(topo.clicksStream, { last_by_subj: topo.clickSubject(s) }).then((m) => m?.seq ?? 0, () => 0);
      if (Number((await redis.hget(keys.meta(s), 'seq')) ?? 0) < last) return false;
    }
    return true;
  }, { timeoutMs: 30_000 });
  // Too old for the actor (past the 10 min horizon): dead-lettered by its shard, not counted.
  tooOldClick = { click_id: 'old1', ad_id: 'ad1', ts: Date.now() - 20 * 60_000 };
  const producer = new ClickProducer(nc, topo, { shards: SHARDS });
  await producer.publish([tooOldClick]);
  await waitFor('the too-old click dead-lettered', async () => (await jsm.streams.info(topo.deadLetterStream)).state.messages >= 1, { timeoutMs: 30_000 });
  const lastMinute = Math.floor((base + 150_000) / 60_000);
  await waitFor('minutes closed in every shard', async () => {
    for (let s = 0; s < SHARDS; s++) if (Number((await redis.hget(keys.meta(s), 'closedThrough')) ?? -1) < lastMinute) return false;
    return true;
  }, { timeoutMs: 90_000, everyMs: 250 });
  await writeArchive();
}, 150_000);

afterAll(async () => {
  redis?.disconnect();
  await nc?.close();
  await stack?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('adagg reconcile', () => {
  it('finds no mismatch on a clean day, exit 0, and stores the report', async () => {
    const run = await cli(['--json']);
    expect(run.code, run.stderr).toBe(0);
    const r = JSON.parse(run.stdout);
    expect(r).toMatchObject({ day, mismatches: 0, rows: [], shards: SHARDS, pending_minutes: 0 });
    // 60 distinct clicks; the duplicates and the too-old click are not clicks of the day's counts.
    expect(r.clicks).toBe(sent.size);
    expect(r.files).toBeGreaterThan(0);
    // The archive does hold the 4 duplicate copies and the too-old click, with its letter.
    expect(written.rows).toBe(sent.size + 5);
    expect(written.tooOld).toEqual([expect.objectContaining({ click_id: tooOldClick.click_id, src_seq: expect.any(Number) })]);
    expect((await getJson(`${stack.url}/v1/reconciliations/${day}`)).body).toMatchObject({ day, mismatches: 0, clicks: sent.size });
    // Before 00:20 UTC the too-old click is on the day before: that day must come out clean too
    // (its only archived click is the refused copy, which the comparison must leave out).
    const oldDay = new Date(tooOldClick.ts).toISOString().slice(0, 10);
    if (oldDay !== day) {
      const prev = await cli(['--json'], 60_000, oldDay);
      expect(prev.code, prev.stderr).toBe(0);
      expect(JSON.parse(prev.stdout)).toMatchObject({ day: oldDay, mismatches: 0 });
    }
  }, 90_000);

  it('names exactly an injected mismatch and exits 1; the route serves that report', async () => {
    const k = sent.get('k10')!;
    const minute = Math.floor(k.ts / 60_000);
    const shard = shardOf(k.ad_id, SHARDS);
    const key = keys.counts(shard, minute, null, null);
    await redis.hincrby(key, k.ad_id, 1);
    try {
      const run = await cli(['--json']);
      expect(run.code, run.stderr).toBe(1);
      const r = JSON.parse(run.stdout);
      expect(r.mismatches).toBe(1);
      expect(r.rows).toEqual([expect.objectContaining({ ad_id: k.ad_id, minute: new Date(minute * 60_000).toISOString(), diff: 1, stored: r.rows[0].archive + 1 })]);
      const table = await cli([]);
      expect(table.code).toBe(1);
      expect(table.stdout).toContain(k.ad_id);
      expect(table.stdout).toMatch(/1 mismatch,/);
      const got = await getJson(`${stack.url}/v1/reconciliations/${day}`);
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject({ day, mismatches: 1, truncated: false, rows: [{ ad_id: k.ad_id, diff: 1 }] });
    } finally {
      await redis.hincrby(key, k.ad_id, -1);
    }
  }, 90_000);

  it('counts clicks the risk rules took (the !inv fields) as clicks', async () => {
    // As a rule taking one of k20's ad-minute clicks stores it: one less valid, one invalid.
    const k = sent.get('k20')!;
    const minute = Math.floor(k.ts / 60_000);
    const shard = shardOf(k.ad_id, SHARDS);
    const total = keys.counts(shard, minute, null, null);
    const inv = keys.counts(shard, minute, '!inv', 'ip-cap');
    await redis.hincrby(total, k.ad_id, -1);
    await redis.hset(inv, k.ad_id, 1);
    await redis.hset(keys.dimIndex(shard, minute), JSON.stringify(['!inv', 'ip-cap']), '1');
    try {
      const run = await cli(['--json']);
      expect(run.code, run.stdout).toBe(0);
    } finally {
      await redis.hincrby(total, k.ad_id, 1);
      await redis.del(inv);
      await redis.hdel(keys.dimIndex(shard, minute), JSON.stringify(['!inv', 'ip-cap']));
    }
  }, 60_000);

  it('refuses while the archive is behind: ADAGG_E_ARCHIVE_BEHIND, exit 2', async () => {
    const seq = Number(await redis.hget(keys.meta(0), 'seq'));
    await redis.hset(keys.archive('a-s0'), 'seq', seq - 1);
    try {
      const run = await cli(['--wait-ms', '1500']);
      expect(run.code).toBe(2);
      expect(run.stderr).toContain('ADAGG_E_ARCHIVE_BEHIND');
      expect(run.stderr).toContain('waiting for the archive');
    } finally {
      await redis.hset(keys.archive('a-s0'), 'seq', lastSeq);
    }
  }, 60_000);

  it('waits for the dead-letter archive too: a refusal not archived yet is ADAGG_E_ARCHIVE_BEHIND', async () => {
    await redis.hset(keys.archive('a-dlq'), 'seq', dlqLast - 1);
    try {
      const run = await cli(['--wait-ms', '1500']);
      expect(run.code).toBe(2);
      expect(run.stderr).toContain('dead letters archived');
    } finally {
      await redis.hset(keys.archive('a-dlq'), 'seq', dlqLast);
    }
  }, 60_000);

  it('GET /v1/reconciliations/{day}: 404 without a report, 400 for a bad day', async () => {
    expect(await getJson(`${stack.url}/v1/reconciliations/2001-01-01`)).toMatchObject({ status: 404, body: { code: 'ADAGG_E_NO_RECONCILIATION' } });
    expect(await getJson(`${stack.url}/v1/reconciliations/2001-02-30`)).toMatchObject({ status: 400, body: { code: 'ADAGG_E_BAD_PARAM' } });
  });

  it('the daily run: one of two gateways reconciles the previous day, after ADAGG_RECONCILE_AT', async () => {
    await redis.del(keys.reconcile(day));
    const clock = new ManualClock(Date.parse(`${day}T00:00:00Z`) + 86_400_000 + 3 * 3600_000);
    const events = new RuntimeEvents();
    const results: string[] = [];
    events.on('reconcile', (e) => results.push(e.result));
    const o = { ...stack.opts, archiveDir: dir, reconcileAt: '02:30' };
    const log = createLogger('test', 'silent');
    const a = gatewayReconciliations(redis, o, { clock, log, events });
    const b = gatewayReconciliations(redis, o, { clock, log, events });
    clock.advance(1);
    await waitFor('the daily report stored', async () => (await redis.exists(keys.reconcile(day))) === 1 && results.length > 0, { timeoutMs: 30_000 });
    clock.advance(31_000);
    await a.schedule?.close();
    await b.schedule?.close();
    expect(results).toEqual(['ok']);
    expect(JSON.parse((await redis.get(keys.reconcile(day)))!)).toMatchObject({ mismatches: 0, clicks: sent.size });
  }, 60_000);
});
