import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import { ingestFiles } from '../../src/cli/ingest.ts';
import { ClickProducer } from '../../src/runtime/producer.ts';
import { topology, type Topology } from '../../src/runtime/topology.ts';
import { finalAdCount, waitShardsCommitted } from '../helpers/settle.ts';
import { runAdagg, type CliRun } from '../helpers/adagg-cli.ts';
import { postClicks, startStack, type TestStack } from '../helpers/stack.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const MIN = 60_000;

/** Runs the adagg CLI as a real child process. */
const adagg = (args: string[], timeoutMs = 30_000): Promise<CliRun> => runAdagg(args, { timeoutMs });

const fmt = (ms: number): string => new Date(ms).toISOString().slice(0, 19).replace('T', ' ');

/**
 * `adagg ingest` end to end: a ~2,000-line [AdClickEvent] log and an NDJSON file go through the
 * gateway; the JSON summary reports accepted/rejected by code; a second run over the same files
 * (with a different batch size, so different JetStream messages) does not double any count.
 */
describe('adagg ingest CLI', () => {
  let stack: TestStack;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let topo: Topology;
  let dir: string;
  let logPath: string;
  let ndPath: string;
  /** ad → minute → expected count, computed here from the files. */
  const expected = new Map<string, Map<number, number>>();
  let logValid = 0;
  let ndValid = 0;
  let totalLines = 0;
  let badIpLine = 0;
  let shortLine = 0;
  /** Log lines with country USA, by ad (counted under country=US). */
  const usaByAd = new Map<string, number>();
  let firstMinute = Infinity;
  let lastMinute = -Infinity;

  const add = (ad: string, ts: number): void => {
    const m = Math.floor(ts / MIN);
    firstMinute = Math.min(firstMinute, m);
    lastMinute = Math.max(lastMinute, m);
    let byMin = expected.get(ad);
    if (!byMin) expected.set(ad, (byMin = new Map()));
    byMin.set(m, (byMin.get(m) ?? 0) + 1);
  };

  /** Every ad's per-minute counts over [firstMinute, lastMinute] once final, compared with `expected`. */
  const mismatches = async (): Promise<string[]> => {
    await waitShardsCommitted(stack, jsm);
    const out: string[] = [];
    for (const [ad, byMin] of expected) {
      const body = await finalAdCount(stack.url, ad, firstMinute * MIN, (lastMinute + 1) * MIN);
      let total = 0;
      for (const row of body.minutes as Array<{ minute: string; count: number }>) {
        const want = byMin.get(Date.parse(row.minute) / MIN) ?? 0;
        total += want;
        if (row.count !== want) out.push(`${ad} @ ${row.minute}: want ${want}, got ${row.count}`);
      }
      if (body.count !== total) out.push(`${ad} total: want ${total}, got ${body.count}`);
    }
    return out;
  };

  beforeAll(async () => {
    // A duplicate window longer than the test, so a re-run with the same batches is a JetStream duplicate.
    stack = await startStack({ duplicateWindowMs: 15 * MIN });
    topo = topology(stack.opts.prefix);
    nc = await connect({ servers: stack.servers.natsUrl });
    jsm = await jetstreamManager(nc);
    dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-cli-'));

    // ~2,000 log lines between 4 and 2 minutes ago, Zipf-ish over 20 ads, plus 2 malformed lines.
    const now = Date.now();
    const start = now - 4 * MIN;
    const countries = ['USA', 'DE', 'FR', 'JP'];
    const log: string[] = [];
    for (let i = 0; i < 2000; i++) {
      const ts = Math.floor((start + (i * 2 * MIN) / 2000) / 1000) * 1000;
      const ad = `ad${String(1 + ((i * i + 3 * i) % 20 < 8 ? 0 : (i % 20))).padStart(3, '0')}`;
      log.push(`[AdClickEvent] ${ad}, ${fmt(ts)}, user-${i % 97}, 207.148.${i % 250}.${(i * 7) % 250}, ${countries[i % 4]}`);
      add(ad, ts);
      if (countries[i % 4] === 'USA') usaByAd.set(ad, (usaByAd.get(ad) ?? 0) + 1);
      logValid++;
      if (i === 600) {
        log.push(`[AdClickEvent] ad003, ${fmt(ts)}, user-1`); // 3 fields: rejected by the CLI itself
        shortLine = log.length;
      }
      if (i === 1400) {
        log.push(`[AdClickEvent] ad004, ${fmt(ts)}, user-2, 999.1.1.1, USA`); // rejected by the gateway
        badIpLine = log.length;
      }
    }
    logPath = path.join(dir, 'clicks.log');
    await writeFile(logPath, log.join('\n') + '\n');

    const nd: string[] = [];
    for (let i = 0; i < 30; i++) {
      const ts = now - 3 * MIN + i * 1000;
      nd.push(JSON.stringify({ click_id: `nd-${i}`, ad_id: `nd${i % 3}`, ts, country: 'US' }));
      add(`nd${i % 3}`, ts);
      ndValid++;
    }
    nd.push('{"click_id": "nd-broken", ');
    nd.push(JSON.stringify({ click_id: 'nd-noad', ts: now - 3 * MIN }));
    ndPath = path.join(dir, 'clicks.ndjson');
    await writeFile(ndPath, nd.join('\n') + '\n');
    totalLines = log.length + nd.length;
  });
  afterAll(async () => {
    await nc?.drain().catch(() => undefined);
    await stack?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('ingests a log file and an NDJSON file and prints a JSON summary; progress goes to stderr; exit 3 for rejected lines', async () => {
    const run = await adagg(['ingest', '--url', stack.url, '--json', '--batch', '500', logPath, ndPath]);
    // Lines were rejected: exit 3 (was 0, issue 13), the summary printed all the same.
    expect(run.code, run.stderr).toBe(3);
    const sum = JSON.parse(run.stdout.trim());
    expect(sum).toMatchObject({
      lines: totalLines,
      accepted: logValid + ndValid,
      duplicates: 0,
      rejected: 4,
      byCode: { invalid_field: 1, invalid_ip: 1, invalid_json: 1, missing_field: 1 },
    });
    const samples = (sum.samples as Array<{ file: string; line: number; code: string }>).map((s) => [s.file, s.line, s.code]);
    expect(samples).toEqual(
      expect.arrayContaining([
        [logPath, shortLine, 'invalid_field'],
        [logPath, badIpLine, 'invalid_ip'],
        [ndPath, 31, 'invalid_json'],
        [ndPath, 32, 'missing_field'],
      ]),
    );
    expect(samples).toHaveLength(4);
    // Progress lines name each file and end at 100%.
    expect(run.stderr).toContain(`${logPath}: 100.0%`);
    expect(run.stderr).toContain(`${ndPath}: 100.0%`);
    expect(run.stderr).toMatch(/accepted=\d+/);
    expect(run.stdout).not.toContain('100.0%');

    expect(await mismatches()).toEqual([]);
    // The log's USA lines are counted under country=US (ADAGG_COUNTRY_ALPHA3=map, the default).
    const [ad, usa] = [...usaByAd].sort((a, b) => b[1] - a[1])[0]!;
    const us = await finalAdCount(stack.url, ad, firstMinute * MIN, (lastMinute + 1) * MIN, '&country=US');
    expect(us.count).toBe(usa);
    // A filter is read like an ingested code: country=USA asks for US.
    const usaFilter = await finalAdCount(stack.url, ad, firstMinute * MIN, (lastMinute + 1) * MIN, '&country=USA');
    expect(usaFilter.count).toBe(usa);
  });

  it('a second run over the same files does not double any count; duplicates are reported apart', async () => {
    const before = (await jsm.streams.info(topo.clicksStream)).state.messages;
    // Another batch size: other batch compositions, so new JetStream messages; click_id dedupe must hold.
    const run = await adagg(['ingest', '--url', stack.url, '--json', '--allow-rejects', '--batch', '700', logPath, ndPath]);
    expect(run.code, run.stderr).toBe(0);
    const sum = JSON.parse(run.stdout.trim());
    // The NDJSON file is one request either way: JetStream reports its identical message as a duplicate.
    expect(sum).toMatchObject({ lines: totalLines, accepted: logValid, duplicates: ndValid, rejected: 4 });
    expect((await jsm.streams.info(topo.clicksStream)).state.messages).toBeGreaterThan(before);

    expect(await mismatches()).toEqual([]);
    const metrics = await (await fetch(`${stack.url}/metrics`)).text();
    // The log's clicks come again in new messages and are dropped by click_id in the actors; the
    // NDJSON file is one request either way, so JetStream already drops its identical message.
    expect(Number(/^adagg_duplicates_total (\d+)/m.exec(metrics)?.[1])).toBe(logValid);

    // And a third, with the original batch size (same JetStream message ids): every click is a
    // duplicate, none accepted, and the text summary says so; still no change.
    const again = await adagg(['ingest', '--url', stack.url, '--allow-rejects', '--batch', '500', logPath]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain(`lines ${totalLines - 32}  accepted 0  duplicates ${logValid}  rejected 2`);
    expect(await mismatches()).toEqual([]);
  });

  it('refuses lines that are not valid UTF-8 (ids differing only in invalid bytes never merge) and keeps the good one', async () => {
    const ts = Date.now() - 3 * MIN;
    const line = (id: Buffer): Buffer =>
      Buffer.concat([Buffer.from('{"click_id":"bad-'), id, Buffer.from(`","ad_id":"enc001","ts":${ts}}`)]);
    const good = Buffer.from(JSON.stringify({ click_id: 'enc-good', ad_id: 'enc001', ts }));
    const file = path.join(dir, 'encoding.ndjson');
    await writeFile(file, Buffer.concat([line(Buffer.from([0xff])), Buffer.from('\n'), line(Buffer.from([0xfe])), Buffer.from('\n'), good, Buffer.from('\n')]));
    const sum = await ingestFiles([file], { url: stack.url, batchLines: 100, maxAttempts: 3 }, new PassThrough());
    expect(sum).toMatchObject({ accepted: 1, rejected: 2, byCode: { bad_encoding: 2 } });
    expect(sum.samples.map((x) => x.line)).toEqual([1, 2]);
  });

  it('HTTP ingest: alpha-3 USA is counted under country=US; ADAGG_COUNTRY_ALPHA3=keep keeps USA', async () => {
    const ts = Date.now() - 3 * MIN;
    const m = Math.floor(ts / MIN) * MIN;
    const body = (prefix: string): string[] => [
      JSON.stringify({ click_id: `${prefix}-1`, ad_id: 'cty001', ts, country: 'USA' }),
      JSON.stringify({ click_id: `${prefix}-2`, ad_id: 'cty001', ts, country: 'usa' }),
      JSON.stringify({ click_id: `${prefix}-3`, ad_id: 'cty001', ts, country: 'US' }),
      JSON.stringify({ click_id: `${prefix}-4`, ad_id: 'cty001', ts, country: 'DEU' }),
    ];
    const posted = await postClicks(stack.url, body('map'));
    expect(posted).toMatchObject({ status: 200, body: { accepted: 4, rejected: [] } });
    expect(posted.body.duplicates).toBeUndefined();
    expect((await finalAdCount(stack.url, 'cty001', m, m + MIN, '&country=US')).count).toBe(3);
    expect((await finalAdCount(stack.url, 'cty001', m, m + MIN, '&country=DE')).count).toBe(1);
    // The same request again: one JetStream message, reported as a duplicate, not counted again.
    expect(await postClicks(stack.url, body('map'))).toMatchObject({ status: 200, body: { accepted: 4, duplicates: 4 } });
    await waitShardsCommitted(stack, jsm);
    expect((await finalAdCount(stack.url, 'cty001', m, m + MIN, '&country=US')).count).toBe(3);
    // The producer API normalises too.
    await new ClickProducer(nc, topo, { shards: stack.opts.shards }).publish([{ click_id: 'prod-1', ad_id: 'cty002', ts, country: 'USA' }]);
    expect((await finalAdCount(stack.url, 'cty002', m, m + MIN, '&country=US')).count).toBe(1);

    // A second stack (own prefix, same servers) with the option off keeps the codes as given.
    const kept = await startStack({ countryAlpha3: 'keep' }, stack.servers);
    try {
      expect((await postClicks(kept.url, body('keep'))).status).toBe(200);
      expect((await finalAdCount(kept.url, 'cty001', m, m + MIN, '&country=USA')).count).toBe(2);
      expect((await finalAdCount(kept.url, 'cty001', m, m + MIN, '&country=US')).count).toBe(1);
      expect((await finalAdCount(kept.url, 'cty001', m, m + MIN, '&country=DEU')).count).toBe(1);
    } finally {
      await kept.close();
    }
  });

  it('adagg --help and adagg ingest --help exit 0', async () => {
    const [top, ingest, bin] = await Promise.all([
      adagg(['--help']),
      adagg(['ingest', '--help']),
      new Promise<CliRun>((resolve, reject) => {
        const child = spawn(process.execPath, [path.join(ROOT, 'bin/adagg.mjs'), 'ingest', '--help'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.once('error', reject);
        child.once('exit', (code) => resolve({ code, stdout, stderr: '' }));
      }),
    ]);
    expect(top.code).toBe(0);
    expect(top.stdout).toContain('Usage: adagg <command>');
    expect(top.stdout).toContain('ingest');
    expect(ingest.code).toBe(0);
    expect(ingest.stdout).toContain('Usage: adagg ingest');
    expect(ingest.stdout).toContain('--url');
    expect(ingest.stdout).toContain('--follow');
    expect(ingest.stdout).toContain('--allow-rejects');
    expect(bin.code).toBe(0);
    expect(bin.stdout).toContain('Usage: adagg ingest');
  });
});
