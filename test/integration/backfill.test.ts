/**
 * Backfill end to end (issue 10): a real stack (nats-server, redis-server, archivers) has counted
 * live clicks; a file of clicks two days late (NDJSON and `[AdClickEvent]` log lines, the design
 * documents' 2024 example too, a repeat, a bad line and a recent line) goes through
 * `adagg backfill` (a child process): exactly the minutes it touches change, to the counts computed
 * here; audit records name them; the same file again changes nothing. `--from-dead-letters` brings
 * back a click the shard refused as too old.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Click } from '../../src/model/click.ts';
import { shardOf } from '../../src/model/partition.ts';
import { isoOf, minuteOf, minuteStartMs } from '../../src/model/time.ts';
import { ClickProducer } from '../../src/runtime/producer.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { topology } from '../../src/runtime/topology.ts';
import { runAdagg, type CliRun } from '../helpers/adagg-cli.ts';
import { postClicks, startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

const SHARDS = 3;
const HOUR = 3_600_000;
let stack: TestStack;
let nc: NatsConnection;
let redis: Redis;
let keys: RedisKeys;
let dir: string;
let file: string;
/** What the file's valid lines should add: field → count (`shard|minute|dim|value|ad`). */
const expected = new Map<string, number>();
let late: number;
let fileLines: string[] = [];

/** The file, its last line a click of now (too recent to backfill: refused), rewritten before each run. */
async function lateFile(): Promise<string> {
  await writeFile(file, `${[...fileLines, JSON.stringify({ click_id: 'recent', ad_id: 'ad1', ts: Date.now() })].join('\n')}\n`);
  return file;
}

function cli(args: string[], timeoutMs = 120_000): Promise<CliRun> {
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
      // Longer than the stack's 10 s (only the CLI's margin: files read, the too_recent bound), so the
      // file's click of now stays too recent however slowly the child starts on a loaded machine.
      ADAGG_CORRECTION_HORIZON_MS: '120000',
      ADAGG_MAX_FUTURE_MS: '1000',
      ADAGG_ALLOWED_LATENESS_MS: '1000',
      ADAGG_IDLE_TIMEOUT_MS: '1000',
      USER: 'backfill-test',
    },
  });
}

/** Every stored field of the minutes in [fromMs, toMs). */
async function storedFields(fromMs: number, toMs: number): Promise<Map<string, number>> {
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

function expect1(c: Pick<Click, 'ad_id' | 'ts' | 'country'>): void {
  const s = shardOf(c.ad_id, SHARDS);
  const m = minuteOf(c.ts);
  const inc = (k: string): void => void expected.set(k, (expected.get(k) ?? 0) + 1);
  inc(`${s}|${m}|||${c.ad_id}`);
  if (c.country) inc(`${s}|${m}|country|${c.country}|${c.ad_id}`);
}

const sqlTime = (ms: number): string => new Date(ms).toISOString().slice(0, 19).replace('T', ' ');

async function auditLines(): Promise<any[]> {
  const files = await readdir(path.join(dir, 'audit')).catch(() => [] as string[]);
  const out: any[] = [];
  for (const f of files.sort()) for (const l of (await readFile(path.join(dir, 'audit', f), 'utf8')).trim().split('\n')) if (l) out.push(JSON.parse(l));
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-backfill-'));
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
  // Live clicks on every shard: each shard's watermark (and sealed bound) is near now.
  const live = Array.from({ length: 30 }, (_, i) => JSON.stringify({ click_id: `live${i}`, ad_id: `ad${i % 6}`, ts: Date.now() - 1000, country: 'US' }));
  expect((await postClicks(stack.url, live)).status).toBe(200);
  await waitFor('every shard has applied clicks', async () => {
    for (let s = 0; s < SHARDS; s++) if (Number((await redis.hget(keys.meta(s), 'seq')) ?? 0) === 0) return false;
    return true;
  }, { timeoutMs: 30_000 });

  // Two days late: three minutes, six ads, log lines and NDJSON.
  late = Math.floor((Date.now() - 2 * 86_400_000) / HOUR) * HOUR + 10 * 60_000;
  const lines: string[] = [];
  for (let i = 0; i < 36; i++) {
    const ad = `ad${i % 6}`;
    const ts = late + (i % 3) * 60_000 + i * 1000;
    const country = ['USA', 'FRA'][i % 2]!;
    if (i % 2 === 0) lines.push(`[AdClickEvent] ${ad}, ${sqlTime(ts)}, user-${i}, 207.148.22.${i}, ${country}`);
    else lines.push(JSON.stringify({ click_id: `bf${i}`, ad_id: ad, ts, user_id: `user-${i}`, country: country.slice(0, 2) }));
    expect1({ ad_id: ad, ts: Math.floor(ts / 1000) * 1000, country: country.slice(0, 2) });
  }
  lines.push(JSON.stringify({ click_id: 'bf1', ad_id: 'ad1', ts: late + 1000, country: 'FR' })); // a repeat: not counted
  lines.push('[AdClickEvent] ad001, 2024-07-09 00:00:01, user-1, 207.148.22.22, USA'); // the design documents' example
  expect1({ ad_id: 'ad001', ts: Date.parse('2024-07-09T00:00:01Z'), country: 'US' });
  lines.push(JSON.stringify({ click_id: 'bad', ad_id: 'ad1', ts: 'yesterday' })); // invalid_ts
  fileLines = lines;
  file = path.join(dir, 'late.log');
  await writeFile(file, `${lines.join('\n')}\n`);
}, 120_000);

afterAll(async () => {
  redis?.disconnect();
  await nc?.close();
  await stack?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('adagg backfill', () => {
  const lateRange = (): [number, number] => [late - HOUR, late + 2 * HOUR];
  const designMinute = minuteOf(Date.parse('2024-07-09T00:00:01Z'));

  it('--dry-run writes nothing', async () => {
    const run = await cli(['backfill', await lateFile(), '--dry-run', '--json']);
    expect(run.code, run.stderr).toBe(3);
    const r = JSON.parse(run.stdout);
    expect(r).toMatchObject({ dry_run: true, written: 37, refused: 2, duplicates_in_input: 1, batch: null, audit_ids: [] });
    expect(r.fields_changed).toBe([...expected.keys()].length);
    expect(await storedFields(...lateRange())).toEqual(new Map());
    expect(await auditLines()).toEqual([]);
  }, 180_000);

  it('loads a file two days late: exactly its minutes change, with audit records; the same file again changes nothing', async () => {
    const run = await cli(['backfill', await lateFile(), '--reason', 'edge outage 2 days ago', '--by', 'bob', '--json']);
    expect(run.code, run.stderr).toBe(3);
    const r = JSON.parse(run.stdout);
    expect(r).toMatchObject({ written: 37, refused: 2, duplicates_in_input: 1, already_archived: 0, batch: 1 });
    expect(r.bad_lines.map((b: { reason: string; code: string }) => [b.code, b.reason])).toEqual([
      ['ADAGG_E_BACKFILL_BAD_LINE', 'invalid_ts'],
      ['ADAGG_E_BACKFILL_BAD_LINE', 'too_recent'],
    ]);
    expect(r.files.every((f: string) => /\/raw\/date=.*\/bf-000000000001-000000000001\.parquet$/.test(f))).toBe(true);
    expect(run.stderr).toContain('backfill: wrote 37 row(s)');
    // Exactly the expected fields, nothing else in the hours around them.
    const stored = new Map([...(await storedFields(...lateRange())), ...(await storedFields(minuteStartMs(designMinute - 5), minuteStartMs(designMinute + 5)))]);
    expect(stored).toEqual(expected);
    // Audit records (one per range of hours touched) name exactly those fields, old 0.
    const audit = await auditLines();
    expect(audit).toHaveLength(2);
    expect(audit.map((a) => a.id).sort()).toEqual([...r.audit_ids].sort());
    for (const a of audit) expect(a).toMatchObject({ cause: 'backfill', by: 'bob', reason: 'edge outage 2 days ago' });
    const changed = audit.flatMap((a) => a.changes);
    expect(changed).toHaveLength(expected.size);
    expect(changed.every((c: { old: number }) => c.old === 0)).toBe(true);
    expect(new Set(changed.map((c: { minute: string }) => c.minute))).toEqual(new Set([...expected.keys()].map((k) => isoOf(minuteStartMs(Number(k.split('|')[1]))))));

    const again = await cli(['backfill', await lateFile(), '--reason', 'again', '--json']);
    expect(again.code, again.stderr).toBe(3);
    const g = JSON.parse(again.stdout);
    expect(g).toMatchObject({ written: 0, already_archived: 37, batch: null, fields_changed: 0, audit_ids: [] });
    expect(await auditLines()).toHaveLength(2);
    expect(new Map([...(await storedFields(...lateRange())), ...(await storedFields(minuteStartMs(designMinute - 5), minuteStartMs(designMinute + 5)))])).toEqual(expected);
  }, 240_000);

  it('--from-dead-letters brings back a click refused as too old', async () => {
    const topo = topology(stack.opts.prefix);
    const old: Click = { click_id: 'refused-1', ad_id: 'ad2', ts: Date.now() - 5 * 60_000, country: 'DE' };
    await new ClickProducer(nc, topo, { shards: SHARDS }).publish([old]);
    const jsm = await jetstreamManager(nc);
    await waitFor('the refusal archived', async () => {
      const last = (await jsm.streams.info(topo.deadLetterStream)).state.last_seq;
      return last > 0 && Number((await redis.hget(keys.archive('a-dlq'), 'seq')) ?? 0) >= last;
    }, { timeoutMs: 60_000, everyMs: 250 });
    const m = minuteOf(old.ts);
    const total = keys.counts(shardOf(old.ad_id, SHARDS), m, null, null);
    const before = Number((await redis.hget(total, old.ad_id)) ?? 0);
    const run = await cli(['backfill', '--from-dead-letters', '--reason', 'refused during an outage', '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ written: 1, clicks: 1 });
    expect(Number(await redis.hget(total, old.ad_id))).toBe(before + 1);
    expect(Number(await redis.hget(keys.counts(shardOf(old.ad_id, SHARDS), m, 'country', 'DE'), old.ad_id))).toBeGreaterThanOrEqual(1);
    const again = await cli(['backfill', '--from-dead-letters', '--reason', 'again', '--json']);
    expect(JSON.parse(again.stdout)).toMatchObject({ written: 0, fields_changed: 0 });
    expect(Number(await redis.hget(total, old.ad_id))).toBe(before + 1);
  }, 180_000);
});
