/**
 * The CLI's last-resort handler and stop rules (src/cli/shutdown.ts), in a real process: an
 * uncaught exception or unhandled rejection is logged with a code and the process stops cleanly
 * with exit 1; a stop has a deadline; a second signal forces exit; one Ctrl-C seen twice (terminal
 * plus npm forwarding) is not a second one.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const FIXTURE = path.join(import.meta.dirname, 'shutdown-fixture.ts');

interface Fixture {
  signal(s: NodeJS.Signals): void;
  exited: Promise<number | null>;
  output(): string;
  logLines(): Array<Record<string, unknown>>;
}

async function fixture(mode: string, timeoutMs = 15_000): Promise<Fixture> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, mode], {
    cwd: ROOT,
    env: { ...process.env, FIXTURE_TIMEOUT_MS: String(timeoutMs) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  await waitFor('fixture READY', () => out.includes('READY') || child.exitCode !== null, { timeoutMs: 60_000, everyMs: 50 });
  return {
    signal: (s) => child.kill(s),
    exited,
    output: () => out,
    logLines: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe('last-resort handler and stop rules', () => {
  it.each(['throw', 'reject'])('an uncaught error (%s) is logged with ADAGG_E_INTERNAL; cleanup runs; exit 1', async (mode) => {
    const f = await fixture(mode);
    expect(await f.exited).toBe(1);
    const fatal = f.logLines().find((l) => l.msg === 'uncaught error; stopping so a supervisor can restart the process');
    expect(fatal, f.output()).toMatchObject({ level: 60, code: 'ADAGG_E_INTERNAL' });
    expect((fatal!.err as { message: string }).message).toMatch(/boom/);
    expect(f.output()).toContain('STEP RAN');
  }, 90_000);

  it('a stop that passes its deadline exits 1', async () => {
    const f = await fixture('hang', 1_000);
    const t0 = Date.now();
    f.signal('SIGINT');
    expect(await f.exited).toBe(1);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(15_000);
    expect(f.logLines().some((l) => l.msg === 'shutdown deadline passed; exiting')).toBe(true);
  }, 90_000);

  it('a second SIGINT/SIGTERM forces exit at once; the same Ctrl-C seen twice does not', async () => {
    const f = await fixture('hang', 600_000);
    f.signal('SIGINT');
    f.signal('SIGINT'); // the duplicate of a terminal's Ctrl-C that npm forwards: ignored
    await waitFor('stop began', () => f.output().includes('STEP RAN'), { timeoutMs: 30_000, everyMs: 20 });
    // Deliberately past the duplicate window (1 s), then a real second signal.
    await new Promise((r) => setTimeout(r, 1_300));
    const stillRunning = await Promise.race([f.exited.then(() => false), Promise.resolve(true)]);
    expect(stillRunning).toBe(true);
    const t0 = Date.now();
    f.signal('SIGTERM');
    expect(await f.exited).toBe(1);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(f.logLines().some((l) => l.msg === 'second signal: exiting now')).toBe(true);
  }, 90_000);

  it('a clean stop exits 0', async () => {
    const f = await fixture('ok');
    f.signal('SIGTERM');
    expect(await f.exited).toBe(0);
    expect(f.output()).toContain('STEP RAN');
  }, 90_000);
});
