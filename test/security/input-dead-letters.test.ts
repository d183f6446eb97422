import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DiscardPolicy, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEAD_LETTER_RAW_BYTES } from '../../src/runtime/dead-letter.ts';
import { topology, type Topology } from '../../src/runtime/topology.ts';
import { finalAdCount, waitShardsCommitted } from '../helpers/settle.ts';
import { runAdagg } from '../helpers/adagg-cli.ts';
import { postClicks, startStack, type TestStack } from '../helpers/stack.ts';

/**
 * Issue 11 defects 6 and 7 on a real stack: dead-letter records are capped (first 4 KB, SHA-256
 * and length of the whole line), every stream adagg creates has a byte bound, and one hostile
 * line (a too_old line over NATS max_payload, a deeply nested one) never fails the POST or
 * `adagg ingest`: the good clicks beside it are counted.
 */
const MIN = 60_000;
const HOUR = 3600_000;

describe('dead letters are capped, streams are bounded, one bad line never fails a POST', () => {
  let stack: TestStack;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let topo: Topology;
  let dir: string;
  // Good clicks land in one minute about 2.5 minutes ago, so it closes and their counts are final.
  const M = Math.floor((Date.now() - 150_000) / MIN);
  const good = (id: string, ad: string, sec: number): string => JSON.stringify({ click_id: id, ad_id: ad, ts: M * MIN + sec * 1000 });
  const tooOld = (id: string, padBytes: number, extra = ''): string =>
    `{"click_id":"${id}","ad_id":"dl-old","ts":${Date.now() - 2 * HOUR},"pad":"${'p'.repeat(padBytes)}"${extra}}`;
  const dlqBytes = async (): Promise<number> => (await jsm.streams.info(topo.deadLetterStream)).state.bytes;
  const finalCount = async (ad: string): Promise<number> => {
    await waitShardsCommitted(stack, jsm);
    return (await finalAdCount(stack.url, ad, M * MIN, (M + 1) * MIN)).count as number;
  };

  beforeAll(async () => {
    stack = await startStack({ maxBodyBytes: 8 * 1024 * 1024, clicksMaxBytes: 512 * 1024 * 1024 });
    topo = topology(stack.opts.prefix);
    nc = await connect({ servers: stack.servers.natsUrl });
    jsm = await jetstreamManager(nc);
    dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-input-'));
  });
  afterAll(async () => {
    await nc?.drain().catch(() => undefined);
    await stack?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('defect 6: every stream has max_bytes; clicks refuse when full (discard new), dead letters drop the oldest', async () => {
    const clicks = (await jsm.streams.info(topo.clicksStream)).config;
    expect([clicks.max_bytes, clicks.discard]).toEqual([stack.opts.clicksMaxBytes, DiscardPolicy.New]);
    const dlq = (await jsm.streams.info(topo.deadLetterStream)).config;
    expect([dlq.max_bytes, dlq.discard]).toEqual([stack.opts.dlqMaxBytes, DiscardPolicy.Old]);
    expect(clicks.max_bytes).toBeGreaterThan(0);
    expect(dlq.max_bytes).toBeGreaterThan(0);
  });

  it('defect 6: five big rejected POSTs grow the dead-letter stream by at most ~5 x lines x 4 KB; a record keeps the first 4 KB, the SHA-256 and the length', async () => {
    const LINES = 10;
    const before = await dlqBytes();
    let sent = 0;
    let firstLine = '';
    for (let p = 0; p < 5; p++) {
      const lines = Array.from({ length: LINES }, (_, i) => tooOld(`dl6-${p}-${i}`, 200_000));
      firstLine ||= lines[0]!;
      sent += lines.reduce((n, l) => n + l.length, 0);
      const res = await postClicks(stack.url, lines);
      expect(res.status).toBe(400); // nothing valid, every line too_old
      expect(res.body.rejected).toHaveLength(LINES);
      expect(res.body.rejected.every((r: any) => r.code === 'too_old' && !r.error.includes('not recorded'))).toBe(true);
    }
    const grown = (await dlqBytes()) - before;
    expect(sent).toBeGreaterThan(9_000_000);
    // Every record stored (50), each ~4 KB of raw plus its metadata.
    expect(grown).toBeGreaterThan(5 * LINES * DEAD_LETTER_RAW_BYTES);
    expect(grown).toBeLessThan(5 * LINES * (DEAD_LETTER_RAW_BYTES + 1024));

    // Every record: at most 4 KB of raw text, with the whole line's SHA-256 and length.
    const state = (await jsm.streams.info(topo.deadLetterStream)).state;
    const records: Array<Record<string, unknown>> = [];
    for (let seq = state.last_seq - 5 * LINES + 1; seq <= state.last_seq; seq++) {
      records.push((await jsm.streams.getMessage(topo.deadLetterStream, { seq }))!.json<Record<string, unknown>>());
    }
    for (const rec of records) {
      expect(Buffer.byteLength(rec.raw as string)).toBeLessThanOrEqual(DEAD_LETTER_RAW_BYTES);
      expect(rec).toMatchObject({ reason: 'too_old', source: 'http', raw_truncated: true, raw_sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    }
    const first = records.find((r) => r.raw_sha256 === createHash('sha256').update(firstLine).digest('hex'));
    expect(first).toMatchObject({ raw_bytes: Buffer.byteLength(firstLine) });
    expect(firstLine.startsWith(first!.raw as string)).toBe(true);
    console.log(`defect 6: 5 POSTs, ${sent} bytes of too_old lines, dead-letter stream grew ${grown} bytes`);
  });

  it('defect 7: a too_old line over NATS max_payload and a deeply nested too_old click do not fail the POST; the good clicks beside them are counted', async () => {
    const huge = tooOld('dl7-huge', 1_500_000); // > 1 MiB max_payload of nats-server
    const deep = tooOld('dl7-deep', 10, `,"x":${'['.repeat(100_000)}${']'.repeat(100_000)}`);
    const res = await postClicks(stack.url, [good('dl7-a', 'dl7-ad', 1), huge, good('dl7-b', 'dl7-ad', 2), deep, good('dl7-c', 'dl7-ad', 3)]);
    expect(res.status, JSON.stringify(res.body).slice(0, 500)).toBe(200);
    expect(res.body.accepted).toBe(3);
    expect(res.body.rejected.map((r: any) => [r.line, r.code])).toEqual([
      [2, 'too_old'],
      [4, 'too_deep'],
    ]);
    // The over-max_payload line was dead-lettered too (its capped record fits a NATS message).
    expect(res.body.rejected[0].error).not.toContain('not recorded');
    // The same in a JSON body (the deeply nested click there is one array element).
    const json = await fetch(`${stack.url}/v1/clicks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: `[${good('dl7-d', 'dl7-ad', 4)},${huge},${deep}]`,
    });
    const body = (await json.json()) as any;
    expect(json.status, JSON.stringify(body).slice(0, 500)).toBe(200);
    expect(body.accepted).toBe(1);
    expect(body.rejected.map((r: any) => [r.line, r.code])).toEqual([
      [2, 'too_old'],
      [3, 'too_deep'],
    ]);
    expect(await finalCount('dl7-ad')).toBe(4);
  });

  // Exit 3 says lines were rejected (issue 13: `--allow-rejects` makes it 0); before the fix the
  // command failed on the first such line with the gateway's 500.
  it('defect 7: adagg ingest on a file with such lines counts the good lines, reports the bad ones and exits 3 (rejects)', async () => {
    const file = path.join(dir, 'hostile.ndjson');
    const lines = [
      good('dl7c-1', 'dl7c-ad', 5),
      tooOld('dl7c-huge', 1_500_000),
      good('dl7c-2', 'dl7c-ad', 6),
      tooOld('dl7c-deep', 10, `,"x":${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}`),
      good('dl7c-3', 'dl7c-ad', 7),
    ];
    await writeFile(file, lines.join('\n') + '\n');
    const run = await runAdagg(['ingest', '--url', stack.url, '--json', file], { timeoutMs: 60_000 });
    expect(run.code, run.stderr.slice(-2000)).toBe(3);
    const sum = JSON.parse(run.stdout.trim());
    expect(sum).toMatchObject({ lines: 5, accepted: 3, rejected: 2, byCode: { too_old: 1, too_deep: 1 } });
    expect((sum.samples as Array<{ line: number; code: string }>).map((s) => [s.line, s.code])).toEqual([
      [2, 'too_old'],
      [4, 'too_deep'],
    ]);
    expect(await finalCount('dl7c-ad')).toBe(3);
  });

  it('defect 10: an ad id of 101-128 characters is ingested and queried end to end', async () => {
    const ads = [101, 128].map((n) => `L${'x'.repeat(n - 1)}`);
    const res = await postClicks(stack.url, ads.map((ad, i) => good(`long-${i}`, ad, 8 + i)));
    expect([res.status, res.body.accepted]).toEqual([200, 2]);
    for (const ad of ads) expect(await finalCount(ad), String(ad.length)).toBe(1);
  });
});
