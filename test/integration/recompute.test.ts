/**
 * Kappa recompute end to end (issue 10): a real stack (nats-server, redis-server, archivers writing
 * Parquet with DuckDB) counts clicks with duplicates and a too-old copy; once their minutes are
 * sealed, stored counts are corrupted on purpose. `adagg recompute --dry-run` (a child process)
 * names exactly the corrupted fields, `--apply` restores every field to the truth (computed here,
 * independently), a second `--apply` changes nothing, and the audit log and the corrections feed
 * hold the change.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Click } from '../../src/model/click.ts';
import { shardOf } from '../../src/model/partition.ts';
import { isoOf, minuteOf, minuteStartMs } from '../../src/model/time.ts';
import type { CorrectionRecord } from '../../src/runtime/corrections-outbox.ts';
import type { ShardStatus } from '../../src/model/shard-queries.ts';
import { ClickProducer } from '../../src/runtime/producer.ts';
import { ShardClient } from '../../src/runtime/shard-client.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { topology } from '../../src/runtime/topology.ts';
import { runAdagg, type CliRun } from '../helpers/adagg-cli.ts';
import { getJson, postClicks, startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

const SHARDS = 3;
let stack: TestStack;
let nc: NatsConnection;
let redis: Redis;
let keys: RedisKeys;
let dir: string;
/** The first copy of every accepted click id (what the actors count). */
const truth = new Map<string, Click>();
let fromMs = 0;
let toMs = 0;

function cli(args: string[], timeoutMs = 90_000): Promise<CliRun> {
  return runAdagg(args, {
    timeoutMs,
    env: {
      ...process.env,
      ADAGG_LOG_LEVEL: 'warn',
      NATS_URL: stack.servers.natsUrl,
      REDIS_URL: stack.servers.redisUrl,
      ADAGG_PREFIX: stack.opts.prefix,
      ADAGG_SHARDS: String(SHARDS),
      ADAGG_ARCHIVE_DIR: dir,
      ADAGG_CORRECTION_HORIZON_MS: String(stack.opts.correctionHorizonMs),
      USER: 'recompute-test',
    },
  });
}

const recomputeArgs = (...more: string[]): string[] => ['recompute', '--from', isoOf(fromMs), '--to', isoOf(toMs), '--json', ...more];

/** Every stored field of the range: `shard|minute|dim|value|ad` → count. */
async function storedFields(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (let s = 0; s < SHARDS; s++) {
    for (let m = minuteOf(fromMs); m < minuteOf(toMs); m++) {
      const add = (dim: string | null, value: string | null, h: Record<string, string>): void => {
        for (const [ad, n] of Object.entries(h)) if (Number(n) !== 0) out.set(`${s}|${m}|${dim ?? ''}|${value ?? ''}|${ad}`, Number(n));
      };
      add(null, null, await redis.hgetall(keys.counts(s, m, null, null)));
      for (const f of await redis.hkeys(keys.dimIndex(s, m))) {
        const [dim, value] = JSON.parse(f) as [string, string];
        add(dim, value, await redis.hgetall(keys.counts(s, m, dim, value)));
      }
    }
  }
  return out;
}

/** The truth's fields, computed here from the clicks sent: totals and country per ad-minute. */
function truthFields(): Map<string, number> {
  const out = new Map<string, number>();
  const inc = (k: string): void => void out.set(k, (out.get(k) ?? 0) + 1);
  for (const c of truth.values()) {
    const s = shardOf(c.ad_id, SHARDS);
    const m = minuteOf(c.ts);
    inc(`${s}|${m}|||${c.ad_id}`);
    if (c.country) inc(`${s}|${m}|country|${c.country}|${c.ad_id}`);
  }
  return out;
}

async function readCorrections(): Promise<CorrectionRecord[]> {
  const t = topology(stack.opts.prefix);
  const last = (await (await jetstreamManager(nc)).streams.info(t.correctionsStream)).state.last_seq;
  const out: CorrectionRecord[] = [];
  if (last === 0) return out;
  const consumer = await jetstream(nc).consumers.get(t.correctionsStream);
  for (let seq = 0; seq < last; ) {
    const batch = await consumer.fetch({ max_messages: 1000, expires: 2000 });
    let got = 0;
    for await (const m of batch) {
      got++;
      seq = m.seq;
      out.push(m.json<CorrectionRecord>());
      if (m.seq >= last) break;
    }
    if (got === 0) break;
  }
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-recompute-'));
  // A 10 s horizon (retention 13 s with lateness, idle and max future): minutes seal ~13 s after they end.
  stack = await startStack({
    shards: SHARDS,
    archive: 'on',
    archiveDir: dir,
    archiveFlushMs: 500,
    correctionHorizonMs: 10_000,
    maxFutureMs: 1000,
    allowedLatenessMs: 1000,
    idleTimeoutMs: 1000,
  });
  nc = await connect({ servers: stack.servers.natsUrl });
  redis = new Redis(stack.servers.redisUrl);
  keys = new RedisKeys(stack.opts.prefix);
  // Shard 1's archiver is fenced before any click arrives (as when another node takes the unit
  // over): it stops for good, and shard 1's clicks stay in the stream only, so the recompute reads
  // them from the stream tail while the other shards' come from the Parquet files.
  await waitFor("shard 1's archiver holding its epoch", async () => (await redis.exists(keys.epoch('a-s1'))) === 1, { timeoutMs: 30_000 });
  await redis.incr(keys.epoch('a-s1'));
  const now = Date.now();
  const lines: string[] = [];
  const countries = ['US', 'FR', 'DE'];
  for (let i = 0; i < 90; i++) {
    const c: Click = { click_id: `k${i}`, ad_id: `ad${i % 7}`, ts: now - 6000 + i * 50, country: countries[i % 3]! };
    truth.set(c.click_id, c);
    lines.push(JSON.stringify(c));
  }
  // Duplicates in later requests: the same id again, once with another ts and country (not counted).
  const dups = [JSON.stringify(truth.get('k1')), JSON.stringify({ ...truth.get('k2'), ts: now - 5000, country: 'IT' })];
  expect((await postClicks(stack.url, lines.slice(0, 45))).status).toBe(200);
  expect((await postClicks(stack.url, [...lines.slice(45), ...dups])).status).toBe(200);
  fromMs = minuteStartMs(minuteOf(now - 6000));
  toMs = minuteStartMs(minuteOf(now) + 1);
  // Every minute of the range sealed in every shard (the idle watermark moves on with the clock).
  const client = new ShardClient(nc, topology(stack.opts.prefix), 5000);
  let seen: number[] = [];
  await waitFor(
    'the range sealed',
    async () => {
      seen = [];
      for (let s = 0; s < SHARDS; s++) seen.push((await client.ask<ShardStatus>(s, { op: 'status' })).sealedThrough ?? -1);
      return seen.every((m) => m >= minuteOf(toMs) - 1);
    },
    { timeoutMs: 120_000, everyMs: 500 },
  ).catch((err: unknown) => Promise.reject(new Error(`${String(err)}: sealed ${seen.join(',')}, need ${minuteOf(toMs) - 1}`)));
  // A copy of k3 now, far too old: the shard dead-letters it; recompute must leave it out too.
  const producer = new ClickProducer(nc, topology(stack.opts.prefix), { shards: SHARDS });
  await producer.publish([{ ...truth.get('k3')!, click_id: 'late-copy' }]);
  await waitFor('the too-old click dead-lettered', async () => (await (await jetstreamManager(nc)).streams.info(topology(stack.opts.prefix).deadLetterStream)).state.messages >= 1, {
    timeoutMs: 30_000,
  });
}, 200_000);

afterAll(async () => {
  redis?.disconnect();
  await nc?.close();
  await stack?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('adagg recompute', () => {
  it('finds no difference on clean counts', async () => {
    expect(await storedFields()).toEqual(truthFields());
    const run = await cli(recomputeArgs('--dry-run'));
    expect(run.code, run.stderr).toBe(0);
    const r = JSON.parse(run.stdout);
    expect(r.changes).toEqual([]);
    expect(r.clicks).toBeGreaterThanOrEqual(truth.size);
    // Shard 1's clicks came from the stream tail (its archiver is fenced), the rest from files.
    expect(r.tail_messages).toBeGreaterThan(0);
    expect(r.raw_files).toBeGreaterThan(0);
    expect(Number((await redis.hget(keys.archive('a-s1'), 'seq')) ?? 0)).toBeLessThan(Number(await redis.hget(keys.meta(1), 'seq')));
    expect(run.stderr).toMatch(/recompute: reading \d+ raw file/);
  }, 120_000);

  it('--dry-run names exactly the corrupted fields; --apply restores the truth; a second apply changes nothing', async () => {
    const [a, b, c] = [truth.get('k10')!, truth.get('k11')!, truth.get('k12')!];
    const ka = keys.counts(shardOf(a.ad_id, SHARDS), minuteOf(a.ts), null, null);
    const kb = keys.counts(shardOf(b.ad_id, SHARDS), minuteOf(b.ts), 'country', b.country!);
    const kc = keys.counts(shardOf(c.ad_id, SHARDS), minuteOf(c.ts), null, null);
    const ghostShard = shardOf('ghost', SHARDS);
    const kg = keys.counts(ghostShard, minuteOf(fromMs), null, null);
    const before = await storedFields();
    await redis.hincrby(ka, a.ad_id, 3);
    await redis.hdel(kb, b.ad_id);
    await redis.hincrby(kc, c.ad_id, -1);
    await redis.hset(kg, 'ghost', 5);
    const corrupted = new Set([
      `${a.ad_id}|${isoOf(minuteStartMs(minuteOf(a.ts)))}|`,
      `${b.ad_id}|${isoOf(minuteStartMs(minuteOf(b.ts)))}|country=${b.country}`,
      `${c.ad_id}|${isoOf(minuteStartMs(minuteOf(c.ts)))}|`,
      `ghost|${isoOf(fromMs)}|`,
    ]);
    const key = (x: { ad_id: string; minute: string; dim: string | null; value: string | null }): string => `${x.ad_id}|${x.minute}|${x.dim ? `${x.dim}=${x.value}` : ''}`;

    const dry = await cli(recomputeArgs('--dry-run'));
    expect(dry.code, dry.stderr).toBe(0);
    const d = JSON.parse(dry.stdout);
    expect(new Set(d.changes.map(key))).toEqual(corrupted);
    expect(d.changes.every((x: { state: string }) => x.state === 'sealed')).toBe(true);
    expect(d.changes.find((x: { ad_id: string }) => x.ad_id === 'ghost')).toMatchObject({ stored: 5, recomputed: 0 });
    expect(d.clicks_added).toBe(1);
    expect(d.clicks_removed).toBe(3 + 5);
    expect(d.minutes_changed).toBe(new Set([...corrupted].map((k) => k.split('|')[1])).size);
    // The dry run wrote nothing.
    expect(Number(await redis.hget(ka, a.ad_id))).toBe(before.get(`${shardOf(a.ad_id, SHARDS)}|${minuteOf(a.ts)}|||${a.ad_id}`)! + 3);

    const noReason = await cli(recomputeArgs('--apply'));
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toContain('--reason');

    const apply = await cli(recomputeArgs('--apply', '--reason', 'restore corrupted counts', '--by', 'alice'));
    expect(apply.code, apply.stderr).toBe(0);
    const ap = JSON.parse(apply.stdout);
    expect(ap.applied).toMatchObject({ fields: 4, retries: 0, corrections: 4 });
    expect(await storedFields()).toEqual(truthFields());
    expect(await redis.hexists(kg, 'ghost')).toBe(0);
    // The restored field that had been deleted is back in place with the others.
    expect(Number(await redis.hget(kb, b.ad_id))).toBeGreaterThan(0);

    const again = await cli(recomputeArgs('--apply', '--reason', 'again', '--by', 'alice'));
    expect(again.code, again.stderr).toBe(0);
    const ag = JSON.parse(again.stdout);
    expect(ag.changes).toEqual([]);
    expect(ag.applied).toMatchObject({ fields: 0, audit_id: null });

    // One audit record: who, why, what, old → new.
    const month = new Date().toISOString().slice(0, 7);
    const lines = (await readFile(path.join(dir, 'audit', `${month}.jsonl`), 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(1);
    const rec = JSON.parse(lines[0]!);
    expect(rec).toMatchObject({ id: ap.applied.audit_id, by: 'alice', reason: 'restore corrupted counts', cause: 'recompute', from: isoOf(fromMs), to: isoOf(toMs), ads: null });
    expect(rec.command).toContain('recompute --from');
    expect(new Set(rec.changes.map(key))).toEqual(corrupted);
    expect(rec.changes.find((x: { ad_id: string }) => x.ad_id === 'ghost')).toMatchObject({ old: 5, new: 0 });
    const audit = await cli(['audit', '--json']);
    expect(audit.code, audit.stderr).toBe(0);
    expect(JSON.parse(audit.stdout).records.map((r: { id: string }) => r.id)).toEqual([rec.id]);
    const served = await getJson(`${stack.url}/v1/audit?from=${encodeURIComponent(isoOf(Date.parse(rec.at) - 1000))}`);
    expect(served.status).toBe(200);
    expect(served.body).toMatchObject({ truncated: false, records: [{ id: rec.id, by: 'alice', changes_total: 4 }] });
    expect((await getJson(`${stack.url}/v1/audit?to=${Date.parse(rec.at) - 1000}`)).body.records).toEqual([]);
    expect((await getJson(`${stack.url}/v1/audit?from=yesterday`)).body).toMatchObject({ code: 'ADAGG_E_BAD_PARAM' });

    // The corrections feed: one record per changed field, cause 'recompute'.
    const feed = (await readCorrections()).filter((r) => r.cause === 'recompute');
    expect(new Set(feed.map(key))).toEqual(corrupted);
    expect(feed.find((r) => r.ad_id === a.ad_id && r.dim === null)).toMatchObject({ old: Number(before.get(`${shardOf(a.ad_id, SHARDS)}|${minuteOf(a.ts)}|||${a.ad_id}`)) + 3 });
  }, 240_000);

  it('--ad limits the run to the named ads', async () => {
    const a = truth.get('k20')!;
    const k = keys.counts(shardOf(a.ad_id, SHARDS), minuteOf(a.ts), null, null);
    const other = truth.get('k21')!;
    const ko = keys.counts(shardOf(other.ad_id, SHARDS), minuteOf(other.ts), null, null);
    await redis.hincrby(k, a.ad_id, 2);
    await redis.hincrby(ko, other.ad_id, 2);
    try {
      const run = await cli(recomputeArgs('--ad', a.ad_id));
      expect(run.code, run.stderr).toBe(0);
      const r = JSON.parse(run.stdout);
      expect(r.ads).toEqual([a.ad_id]);
      expect(r.changes.map((x: { ad_id: string }) => x.ad_id)).toEqual([a.ad_id]);
    } finally {
      await redis.hincrby(k, a.ad_id, -2);
      await redis.hincrby(ko, other.ad_id, -2);
    }
  }, 120_000);
});
