/**
 * `adagg ingest --follow` as a real process against an in-process stack: lines appended in several
 * writes (one split mid-line), rotation by rename while following and while the follower is dead,
 * truncation (copytruncate, the new content longer than the old offset), and a SIGKILL mid-stream
 * then a restart from the state file. The truth is computed here from the lines written; the
 * counts must match exactly (nothing lost, nothing doubled), `country=US` included (the log says USA).
 */
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitShardsCommitted } from '../helpers/settle.ts';
import { getJson, startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor, waitForValue } from '../helpers/wait.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const MIN = 60_000;
const ADS = 7;

const fmt = (ms: number): string => new Date(ms).toISOString().slice(0, 19).replace('T', ' ');

/** One follower process; `port` is its metrics port once it listens. */
class Follower {
  readonly child: ChildProcess;
  stderr = '';
  stdout = '';
  port = 0;
  readonly exited: Promise<number | null>;
  constructor(args: string[]) {
    this.child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'ingest', '--follow', ...args], {
      cwd: ROOT,
      env: { ...process.env, ADAGG_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      const m = /metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(this.stderr);
      if (m) this.port = Number(m[1]);
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }
  async metrics(): Promise<string> {
    return (await fetch(`http://127.0.0.1:${this.port}/metrics`)).text();
  }
}

/** Sum of a metric's samples whose labels contain `match`. */
function metric(text: string, name: string, match = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) && line.includes(match)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

describe('adagg ingest --follow', () => {
  let stack: TestStack;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let dir: string;
  let logPath: string;
  let ndPath: string;
  let stateFile: string;
  const followers: Follower[] = [];
  /** ad → clicks written; ad → clicks written with country USA. */
  const truth = new Map<string, number>();
  const truthUS = new Map<string, number>();
  let seq = 0;
  const from = Date.now() - 10 * MIN;

  /** `n` log lines (half of them USA), recorded in the truth; returned as one string. */
  const logLines = (n: number): string => {
    let s = '';
    for (let i = 0; i < n; i++, seq++) {
      const ad = `fad${seq % ADS}`;
      const country = seq % 2 === 0 ? 'USA' : 'DE';
      s += `[AdClickEvent] ${ad}, ${fmt(Date.now() - 20_000)}, user-${seq}, 10.0.${seq % 250}.${seq % 97}, ${country}\n`;
      truth.set(ad, (truth.get(ad) ?? 0) + 1);
      if (country === 'USA') truthUS.set(ad, (truthUS.get(ad) ?? 0) + 1);
    }
    return s;
  };
  const ndLines = (n: number): string => {
    let s = '';
    for (let i = 0; i < n; i++, seq++) {
      const ad = `fnd${seq % 3}`;
      s += `${JSON.stringify({ click_id: `fnd-${seq}`, ad_id: ad, ts: Date.now() - 20_000, country: 'usa' })}\n`;
      truth.set(ad, (truth.get(ad) ?? 0) + 1);
      truthUS.set(ad, (truthUS.get(ad) ?? 0) + 1);
    }
    return s;
  };

  const start = (): Follower => {
    const f = new Follower(['--url', stack.url, '--state', stateFile, '--poll-ms', '300', '--batch', '40', '--status-every', '0', '--metrics-port', '0', logPath, ndPath]);
    followers.push(f);
    return f;
  };
  /** The state file says every byte now at each path is acknowledged. */
  const caughtUp = (): boolean => {
    let state: { files: Record<string, { ino: number; offset: number }> };
    try {
      state = JSON.parse(readFileSync(stateFile, 'utf8'));
    } catch {
      return false;
    }
    return [logPath, ndPath].every((p) => {
      const st = statSync(p);
      const s = state.files[p];
      return s !== undefined && s.ino === st.ino && s.offset === st.size;
    });
  };
  const waitCaughtUp = (f: Follower): Promise<void> =>
    waitFor('the follower acknowledged every line written', caughtUp, { timeoutMs: 120_000, everyMs: 100, detail: () => `${readFileSync(stateFile, 'utf8')}\n${f.stderr.slice(-2000)}` });
  /** Counted per ad (optionally with a filter) over the test's minutes. */
  const counts = async (filter = ''): Promise<Record<string, number>> => {
    const out: Record<string, number> = {};
    for (const ad of [...truth.keys()].sort()) {
      const r = await getJson(`${stack.url}/v1/ads/${ad}/aggregated_count?from=${from}&to=${Date.now() + 5 * MIN}${filter}`);
      out[ad] = r.body.count as number;
    }
    return out;
  };
  const want = (m: Map<string, number>): Record<string, number> => Object.fromEntries([...truth.keys()].sort().map((ad) => [ad, m.get(ad) ?? 0]));

  beforeAll(async () => {
    stack = await startStack({ maxQueryMinutes: 60 });
    nc = await connect({ servers: stack.servers.natsUrl });
    jsm = await jetstreamManager(nc);
    dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-follow-'));
    logPath = path.join(dir, 'app.log');
    ndPath = path.join(dir, 'app.ndjson');
    stateFile = path.join(dir, 'state', 'follow.json');
  });
  afterAll(async () => {
    for (const f of followers) f.child.kill('SIGKILL');
    await nc?.drain().catch(() => undefined);
    await stack?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('follows appends, rotations by rename and truncate, and a SIGKILL with restart: counts exact', async () => {
    writeFileSync(logPath, logLines(50));
    writeFileSync(ndPath, ndLines(20));
    let f = start();
    await waitCaughtUp(f);

    // Appends in several writes, one line split across two writes: never sent half.
    appendFileSync(logPath, logLines(30));
    const split = logLines(1);
    appendFileSync(logPath, split.slice(0, 25));
    appendFileSync(ndPath, ndLines(15));
    appendFileSync(logPath, split.slice(25) + logLines(30));
    await waitCaughtUp(f);

    // Rename rotation right after a large write: the old file must be read to its end first.
    appendFileSync(logPath, logLines(1500));
    renameSync(logPath, `${logPath}.1`);
    const atRename = JSON.parse(readFileSync(stateFile, 'utf8')).files[logPath] as { offset: number };
    writeFileSync(logPath, logLines(60));
    await waitCaughtUp(f);
    expect(metric(await f.metrics(), 'adagg_tail_rotations_total', 'kind="rename"')).toBe(1);
    // The rename came right after the write (two syscalls of this process; 38 batches to send):
    // most of the old file was still unread then, and was read after it.
    expect(atRename.offset).toBeLessThan(statSync(`${logPath}.1`).size);
    expect(f.stderr).toContain('renamed away, old file read to its end');

    // SIGKILL mid-stream: once a batch of a large write is acknowledged, before the rest.
    const offsetBefore = statSync(logPath).size;
    appendFileSync(logPath, logLines(4000));
    await waitFor('a batch of the large write acknowledged', () => {
      try {
        return (JSON.parse(readFileSync(stateFile, 'utf8')).files[logPath]?.offset ?? 0) > offsetBefore;
      } catch {
        return false;
      }
    }, { timeoutMs: 60_000, everyMs: 20 });
    f.child.kill('SIGKILL');
    await f.exited;
    // While it is down: more lines, then a rename rotation; the restart finds the old file by inode.
    appendFileSync(logPath, logLines(100));
    renameSync(logPath, `${logPath}.2`);
    writeFileSync(logPath, logLines(40));
    appendFileSync(ndPath, ndLines(10));
    const killedAt = JSON.parse(readFileSync(stateFile, 'utf8')).files[logPath].offset as number;
    f = start();
    await waitCaughtUp(f);
    // It resumed the rotated-away file (found by inode) mid-stream, where the state said.
    expect(f.stderr).toContain(`reading ${logPath}.2 (rotated) from offset ${killedAt}`);
    expect(killedAt).toBeLessThan(statSync(`${logPath}.2`).size);

    // copytruncate: the file is emptied and rewritten longer than the acknowledged offset.
    const oldSize = statSync(logPath).size;
    const rewritten = logLines(200);
    expect(Buffer.byteLength(rewritten)).toBeGreaterThan(oldSize);
    writeFileSync(logPath, rewritten);
    await waitCaughtUp(f);
    expect(metric(await f.metrics(), 'adagg_tail_rotations_total', 'kind="truncate"')).toBe(1);

    // Counts exact against the lines written: nothing lost, nothing doubled; USA counted as US.
    await waitShardsCommitted(stack, jsm, { timeoutMs: 60_000 });
    const total = [...truth.values()].reduce((a, b) => a + b, 0);
    expect(total).toBe(50 + 20 + 30 + 1 + 15 + 30 + 1500 + 60 + 4000 + 100 + 40 + 10 + 200);
    await waitForValue('counts equal the lines written', () => counts(), (c) => JSON.stringify(c) === JSON.stringify(want(truth)), { timeoutMs: 60_000 });
    expect(await counts('&country=US')).toEqual(want(truthUS));

    // Metrics of the live follower: nothing behind; the restarted one read what came after the kill.
    const text = await f.metrics();
    expect(metric(text, 'adagg_tail_bytes_behind')).toBe(0);
    expect(metric(text, 'adagg_tail_lines_rejected_total')).toBe(0);
    expect(metric(text, 'adagg_tail_lines_read_total')).toBeGreaterThan(0);

    // SIGTERM: a clean stop, exit 0, with a summary per path.
    f.child.kill('SIGTERM');
    expect(await f.exited).toBe(0);
    expect(f.stdout).toContain(`${logPath}: read`);
  }, 400_000);
});
