/**
 * A TCP proxy in the test process between one runtime node and one nats-server: the suite's stand-in
 * for a network partition, since real ones (iptables, network namespaces) need root. Two ways to cut:
 *
 * - `reset`: every open connection is destroyed and new ones are closed on accept, as when a
 *   firewall answers with RST; the client notices at once and keeps reconnecting.
 * - `blackhole`: open connections stay up but no byte moves either way (both sockets paused, so TCP
 *   flow control pushes back on the peers), and new connections are accepted but never forwarded,
 *   as when packets are silently dropped; the client notices only through its own timeouts.
 *
 * `restore()` heals: blackholed connections resume with whatever was queued.
 */
import net from 'node:net';

export type CutMode = 'reset' | 'blackhole';

export class TcpProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<{ a: net.Socket; b: net.Socket }>();
  private readonly held = new Set<net.Socket>();
  private cut: CutMode | null = null;
  port = 0;

  private constructor(
    private readonly targetPort: number,
    readonly label: string,
  ) {
    this.server = net.createServer((client) => this.accept(client));
  }

  /** Listens on a free loopback port and forwards to `127.0.0.1:targetPort`. */
  static async open(targetPort: number, label: string): Promise<TcpProxy> {
    const p = new TcpProxy(targetPort, label);
    await new Promise<void>((resolve, reject) => {
      p.server.once('error', reject);
      p.server.listen(0, '127.0.0.1', () => resolve());
    });
    const addr = p.server.address();
    p.port = typeof addr === 'object' && addr !== null ? addr.port : 0;
    return p;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get isCut(): boolean {
    return this.cut !== null;
  }

  /** Open client connections (forwarded or held). */
  get connections(): number {
    return this.pairs.size + this.held.size;
  }

  private accept(client: net.Socket): void {
    client.on('error', () => undefined);
    if (this.cut === 'reset') {
      client.resetAndDestroy();
      return;
    }
    if (this.cut === 'blackhole') {
      // Accepted, never answered: the client's connect succeeds and then hears nothing.
      client.pause();
      this.held.add(client);
      client.once('close', () => this.held.delete(client));
      return;
    }
    this.forward(client);
  }

  private forward(client: net.Socket): void {
    const upstream = net.connect({ host: '127.0.0.1', port: this.targetPort });
    upstream.on('error', () => undefined);
    const pair = { a: client, b: upstream };
    this.pairs.add(pair);
    const close = (): void => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.once('close', close);
    upstream.once('close', close);
    client.pipe(upstream);
    upstream.pipe(client);
    if (this.cut === 'blackhole') {
      client.pause();
      upstream.pause();
    }
  }

  /** Cuts the link in `mode` until {@link restore}. */
  cutLink(mode: CutMode): void {
    this.cut = mode;
    for (const { a, b } of [...this.pairs]) {
      if (mode === 'reset') {
        a.resetAndDestroy();
        b.destroy();
      } else {
        // pipe() resumes a paused source when the destination drains; unpipe first.
        a.unpipe(b);
        b.unpipe(a);
        a.pause();
        b.pause();
      }
    }
  }

  /** Heals the link: held connections are forwarded, paused ones flow again. */
  restore(): void {
    const was = this.cut;
    this.cut = null;
    if (was !== 'blackhole') return;
    for (const { a, b } of this.pairs) {
      a.pipe(b);
      b.pipe(a);
      a.resume();
      b.resume();
    }
    for (const client of [...this.held]) {
      this.held.delete(client);
      this.forward(client);
      client.resume();
    }
  }

  async close(): Promise<void> {
    for (const { a, b } of this.pairs) {
      a.destroy();
      b.destroy();
    }
    for (const c of this.held) c.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
