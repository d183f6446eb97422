import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topology, type Topology } from '../../src/runtime/topology.ts';
import { finalAdCount, waitShardsCommitted } from '../helpers/settle.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const MIN = 60_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the adagg CLI as a real child process (node --import tsx src/cli/main.ts ...). */
function adagg(args: string[], timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      cwd: ROOT,
      env: { ...process.env, ADAGG_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`adagg ${args.join(' ')} timed out\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

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
    stack = await startStack();
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

  it('ingests a log file and an NDJSON file and prints a JSON summary; progress goes to stderr', async () => {
    const run = await adagg(['ingest', '--url', stack.url, '--json', '--batch', '500', logPath, ndPath]);
    expect(run.code, run.stderr).toBe(0);
    const sum = JSON.parse(run.stdout.trim());
    expect(sum).toMatchObject({
      lines: totalLines,
      accepted: logValid + ndValid,
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
  });

  it('a second run over the same files does not double any count', async () => {
    const before = (await jsm.streams.info(topo.clicksStream)).state.messages;
    // Another batch size: other batch compositions, so new JetStream messages; click_id dedupe must hold.
    const run = await adagg(['ingest', '--url', stack.url, '--json', '--batch', '700', logPath, ndPath]);
    expect(run.code, run.stderr).toBe(0);
    const sum = JSON.parse(run.stdout.trim());
    expect(sum).toMatchObject({ lines: totalLines, accepted: logValid + ndValid, rejected: 4 });
    expect((await jsm.streams.info(topo.clicksStream)).state.messages).toBeGreaterThan(before);

    expect(await mismatches()).toEqual([]);
    const metrics = await (await fetch(`${stack.url}/metrics`)).text();
    // The log's clicks come again in new messages and are dropped by click_id in the actors; the
    // NDJSON file is one request either way, so JetStream already drops its identical message.
    expect(Number(/^adagg_duplicates_total (\d+)/m.exec(metrics)?.[1])).toBe(logValid);

    // And a third, with the original batch size (same JetStream message ids): still no change.
    const again = await adagg(['ingest', '--url', stack.url, '--json', '--batch', '500', logPath]);
    expect(again.code, again.stderr).toBe(0);
    expect(await mismatches()).toEqual([]);
  });

  it('adagg --help and adagg ingest --help exit 0', async () => {
    const [top, ingest, bin] = await Promise.all([
      adagg(['--help']),
      adagg(['ingest', '--help']),
      new Promise<Run>((resolve, reject) => {
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
    expect(bin.code).toBe(0);
    expect(bin.stdout).toContain('Usage: adagg ingest');
  });
});
