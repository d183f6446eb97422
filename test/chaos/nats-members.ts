/**
 * A 3-server NATS JetStream cluster for the chaos suite whose members can be SIGKILLed, SIGSTOPped
 * and restarted on the same ports and store dirs. Unlike test/helpers/cluster-nats.ts it writes a
 * config file per member with `no_advertise`: clients then only know the URLs they were given, so a
 * node connected through a {@link TcpProxy} cannot route around a cut by reconnecting to an
 * address the servers gossiped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { freePort } from '../../src/runtime/local-servers.ts';
import { waitFor } from '../helpers/wait.ts';

/** nats-server on PATH or in the sbin dirs (Debian puts it in /usr/sbin). */
function natsServerBinary(): string {
  const override = process.env.ADAGG_NATS_SERVER;
  if (override) return override;
  for (const d of [...(process.env.PATH ?? '').split(path.delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin']) {
    if (!d) continue;
    const p = path.join(d, 'nats-server');
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return 'nats-server';
}

/** Resolves true once the port answers with an `INFO` line naming `server`. */
function probeInfo(port: number, server: string): Promise<boolean> {
  return new Promise((resolve) => {
    let buf = '';
    const sock = net.connect({ host: '127.0.0.1', port });
    const finish = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => finish(false));
    sock.once('error', () => finish(false));
    sock.once('close', () => finish(false));
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.includes('\n')) finish(buf.startsWith('INFO ') && buf.includes(`"server_name":"${server}"`));
    });
  });
}

/** One restartable cluster member. */
export class NatsMember {
  private child: ChildProcess | undefined;
  private exitedP: Promise<void> = Promise.resolve();
  /** Times this member was started (1 after the first start). */
  starts = 0;

  constructor(
    readonly name: string,
    readonly port: number,
    private readonly configFile: string,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get alive(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Spawns the server and waits until it answers on its client port. */
  async start(readyTimeoutMs = 20_000): Promise<void> {
    if (this.alive) return;
    const child = spawn(natsServerBinary(), ['-c', this.configFile], { stdio: 'ignore' });
    this.child = child;
    this.exitedP = new Promise((r) => child.once('exit', () => r()));
    this.starts++;
    await waitFor(`nats-server ${this.name} on port ${this.port}`, async () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`nats-server ${this.name} exited while starting (see ${this.configFile}.log)`);
      return probeInfo(this.port, this.name);
    }, { timeoutMs: readyTimeoutMs, everyMs: 100 });
  }

  signal(sig: NodeJS.Signals): void {
    if (this.alive) this.child!.kill(sig);
  }

  /** SIGKILL (after SIGCONT, in case it is stopped) and wait for the exit. */
  async kill(): Promise<void> {
    if (!this.alive) return;
    this.child!.kill('SIGCONT');
    this.child!.kill('SIGKILL');
    await this.exitedP;
  }
}

/** The cluster: members n1..n3 with full-mesh routes and `no_advertise`. */
export class ChaosNatsCluster {
  private constructor(
    readonly members: NatsMember[],
    readonly dir: string,
  ) {}

  /** Comma list of every member's client URL. */
  get urls(): string {
    return this.members.map((m) => m.url).join(',');
  }

  member(name: string): NatsMember {
    const m = this.members.find((x) => x.name === name);
    if (!m) throw new Error(`no nats member ${name}`);
    return m;
  }

  static async start(dir: string, size = 3): Promise<ChaosNatsCluster> {
    const ports = new Set<number>();
    while (ports.size < size * 2) ports.add(await freePort());
    const [clientPorts, routePorts] = [[...ports].slice(0, size), [...ports].slice(size)];
    const members: NatsMember[] = [];
    for (let i = 0; i < size; i++) {
      const name = `n${i + 1}`;
      const store = path.join(dir, name);
      await mkdir(store, { recursive: true });
      const routes = routePorts.filter((_, j) => j !== i).map((p) => `"nats-route://127.0.0.1:${p}"`);
      const conf = path.join(dir, `${name}.conf`);
      await writeFile(
        conf,
        [
          `server_name: ${name}`,
          `listen: "127.0.0.1:${clientPorts[i]}"`,
          `log_file: "${conf}.log"`,
          `jetstream { store_dir: "${store}" }`,
          `cluster { name: "adagg-chaos", listen: "127.0.0.1:${routePorts[i]}", no_advertise: true, routes: [${routes.join(', ')}] }`,
          '',
        ].join('\n'),
      );
      members.push(new NatsMember(name, clientPorts[i]!, conf));
    }
    const c = new ChaosNatsCluster(members, dir);
    try {
      await Promise.all(members.map((m) => m.start()));
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => m.kill()));
  }
}
