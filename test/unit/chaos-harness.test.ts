/**
 * The chaos suite's own parts that must be right for its verdicts to mean anything: a round's
 * faults come from its seed alone (so a printed seed replays it) and never take two NATS servers
 * down at once, and the partition proxy really stops bytes and lets them through again.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FAULT_KINDS, planFaults } from '../chaos/faults.ts';
import { TcpProxy } from '../chaos/tcp-proxy.ts';
import { waitFor } from '../helpers/wait.ts';

describe('chaos fault plans', () => {
  it('are a function of the seed, one or two faults, never two on the same kind of target', () => {
    const kindsSeen = new Set<string>();
    for (let seed = 1; seed <= 500; seed++) {
      const plan = planFaults(seed);
      expect(planFaults(seed)).toEqual(plan);
      expect(plan.length === 1 || plan.length === 2).toBe(true);
      const targets = plan.map((f) => (f.kind === 'partition' ? 'net' : f.kind.split('-')[0]));
      expect(new Set(targets).size).toBe(plan.length);
      for (const f of plan) {
        kindsSeen.add(f.kind);
        expect(f.atMs).toBeGreaterThanOrEqual(500);
        expect(f.forMs).toBeGreaterThan(0);
      }
    }
    expect([...kindsSeen].sort()).toEqual([...FAULT_KINDS].sort());
  });
});

describe('chaos TCP proxy', () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
  });

  /** An echo server behind a proxy, and a client connected through it collecting what comes back. */
  async function echoThroughProxy(): Promise<{ proxy: TcpProxy; client: net.Socket; received: () => string; echoPort: number }> {
    const echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    const port = (echo.address() as net.AddressInfo).port;
    const proxy = await TcpProxy.open(port, 'test');
    const client = net.connect({ host: '127.0.0.1', port: proxy.port });
    client.on('error', () => undefined);
    let got = '';
    client.on('data', (d: Buffer) => (got += d.toString()));
    await new Promise<void>((r) => client.once('connect', () => r()));
    closers.push(async () => {
      client.destroy();
      await proxy.close();
      await new Promise<void>((r) => echo.close(() => r()));
    });
    return { proxy, client, received: () => got, echoPort: port };
  }

  it('blackhole holds bytes both ways until restored, then delivers them', async () => {
    const { proxy, client, received, echoPort } = await echoThroughProxy();
    client.write('a');
    await waitFor('the echo of a', () => received() === 'a');
    proxy.cutLink('blackhole');
    client.write('b');
    // A byte sent around the proxy, written after 'b', echoes back: had 'b' not been held, its echo
    // would have come back by then too.
    const direct = net.connect({ host: '127.0.0.1', port: echoPort });
    let around = '';
    direct.on('data', (d: Buffer) => (around += d.toString()));
    direct.write('x');
    await waitFor('the echo around the proxy', () => around === 'x');
    direct.destroy();
    expect(received()).toBe('a');
    expect(proxy.connections).toBe(1);
    proxy.restore();
    await waitFor('the held byte after restore', () => received() === 'ab');
  });

  it('reset drops the connection and refuses new ones until restored', async () => {
    const { proxy, client } = await echoThroughProxy();
    const closed = new Promise<void>((r) => client.once('close', () => r()));
    proxy.cutLink('reset');
    await closed;
    const refused = net.connect({ host: '127.0.0.1', port: proxy.port });
    refused.on('error', () => undefined);
    await new Promise<void>((r) => refused.once('close', () => r()));
    proxy.restore();
    const again = net.connect({ host: '127.0.0.1', port: proxy.port });
    let echoed = '';
    again.on('data', (d: Buffer) => (echoed += d.toString()));
    again.write('c');
    await waitFor('an echo through the restored link', () => echoed === 'c');
    again.destroy();
  });
});
