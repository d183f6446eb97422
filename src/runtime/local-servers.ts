/**
 * Starts real nats-server and redis-server processes as children of this process, on loopback,
 * for `npm start` (data under ./data) and for integration tests (temporary dirs).
 *
 * Each child runs in its own process group (`detached`): a terminal's Ctrl-C reaches the process
 * group of `npm start` only, so the servers stay up until adagg has made its final commit and stops
 * them itself. A {@link ChildWatchdog} kills a server if this process dies without stopping it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { AdaggError, ErrorCode } from '../errors.ts';
import { ChildWatchdog } from './child-watchdog.ts';

export interface NatsServerOptions {
  /** Client port; 0 or undefined picks a free one (and retries on a port race). */
  port?: number;
  /** JetStream store directory (created if missing). */
  storeDir: string;
  serverName?: string;
  cluster?: { name: string; port: number; routes: string[] };
  /** Server log file; when unset the log is kept in memory for error messages only. */
  logFile?: string;
}

export interface RedisServerOptions {
  /** 0 or undefined picks a free port (and retries on a port race). */
  port?: number;
  /** Working directory for the AOF (created if missing). */
  dir: string;
  /** Default true: `appendonly yes`, `appendfsync everysec`. */
  appendOnly?: boolean;
  logFile?: string;
}

/** A running child server. */
export interface ServerHandle {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  /** SIGTERM, wait for exit, SIGKILL after 5 s. Idempotent. */
  stop(): Promise<void>;
  /** Sends a signal if the child is still running. */
  kill(signal: NodeJS.Signals): void;
  /**
   * For a process about to exit at once (a forced shutdown): sends SIGTERM so the server still
   * shuts down cleanly on its own (AOF flushed), without waiting and without the exit-time SIGKILL.
   */
  stopNow(): void;
  /** Resolves with the exit code (null when ended by a signal). */
  readonly exited: Promise<number | null>;
}

const READY_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;
const PORT_RETRIES = 3;
const TAIL_LINES = 30;

// Children still running (and their temp dirs); one 'exit' hook SIGKILLs them so none outlives a
// normal parent exit. Not run when the parent itself dies by a signal.
const live = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const c of live) {
        try {
          c.kill('SIGKILL');
        } catch {
          // already gone
        }
      }
      for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
    });
  }
  live.add(child);
}

/** Returns a TCP port that was free on 127.0.0.1 a moment ago (racy by nature; callers retry). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('no port assigned'))));
    });
  });
}

/** Finds an executable on PATH, then in sbin dirs (Debian puts nats-server in /usr/sbin). */
function findBinary(name: string, envVar: string): string {
  const override = process.env[envVar];
  if (override) return override;
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, name);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return name; // let spawn report ENOENT
}

/** Spawned child plus its recent output (pipes are drained continuously so the child never blocks). */
class Child {
  readonly proc: ChildProcess;
  readonly exited: Promise<number | null>;
  hasExited = false;
  spawnError: Error | undefined;
  private readonly tail: string[] = [];
  private stopping: Promise<void> | undefined;
  private readonly logFile: string | undefined;
  private readonly logOffset: number;
  private readonly watchdog: ChildWatchdog | undefined;

  constructor(bin: string, args: string[], logFile: string | undefined, logOffset: number) {
    this.logFile = logFile;
    this.logOffset = logOffset; // only this run's part of an appended log file is reported
    // Own process group: the terminal's Ctrl-C must not stop the server before adagg's final commit.
    this.proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    track(this.proc);
    const watchdog = this.proc.pid === undefined ? undefined : new ChildWatchdog(this.proc.pid);
    this.watchdog = watchdog;
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code) => {
        this.hasExited = true;
        watchdog?.disarm();
        live.delete(this.proc);
        resolve(code);
      });
      this.proc.once('error', (err) => {
        // Spawn failure (e.g. ENOENT): no 'exit' follows.
        this.spawnError = err;
        if (this.proc.pid === undefined) {
          this.hasExited = true;
          live.delete(this.proc);
          resolve(null);
        }
      });
    });
    for (const s of [this.proc.stdout, this.proc.stderr]) {
      s?.setEncoding('utf8');
      s?.on('data', (d: string) => {
        for (const l of d.split('\n')) if (l.length > 0) this.tail.push(l);
        if (this.tail.length > TAIL_LINES) this.tail.splice(0, this.tail.length - TAIL_LINES);
      });
    }
  }

  /** Last lines of piped output plus, when logging to a file, of what this run wrote there. */
  async recentOutput(): Promise<string> {
    let fileLines: string[] = [];
    if (this.logFile) {
      try {
        const text = (await readFile(this.logFile, 'utf8')).slice(this.logOffset);
        fileLines = text.split('\n').filter((l) => l.length > 0);
      } catch {
        // no log yet
      }
    }
    return [...this.tail, ...fileLines].slice(-TAIL_LINES).join('\n');
  }

  kill(signal: NodeJS.Signals): void {
    if (!this.hasExited) this.proc.kill(signal);
  }

  stopNow(): void {
    if (this.hasExited) return;
    this.watchdog?.disarm();
    live.delete(this.proc);
    this.proc.kill('SIGTERM');
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.hasExited) return;
      this.proc.kill('SIGTERM');
      const timer = setTimeout(() => this.kill('SIGKILL'), STOP_GRACE_MS);
      await this.exited;
      clearTimeout(timer);
    })();
    return this.stopping;
  }
}

/** Reads from a TCP connection until `done(reply)`; resolves the reply, or undefined on error/timeout. */
function probe(port: number, payload: string | undefined, done: (reply: string) => boolean): Promise<string | undefined> {
  return new Promise((resolve) => {
    let buf = '';
    const sock = net.connect({ host: '127.0.0.1', port });
    const finish = (reply: string | undefined) => {
      sock.destroy();
      resolve(reply);
    };
    sock.setTimeout(1_000, () => finish(undefined));
    sock.once('error', () => finish(undefined));
    sock.once('close', () => finish(undefined));
    if (payload !== undefined) sock.once('connect', () => sock.write(payload));
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      if (done(buf)) finish(buf);
    });
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function fileSize(file: string | undefined): Promise<number> {
  if (!file) return 0;
  await mkdir(path.dirname(file), { recursive: true });
  return stat(file).then((s) => s.size, () => 0);
}

interface Launch {
  what: string;
  bin: string;
  args(port: number): string[];
  /** True once the server on `port` is ready AND is this child (not some other process). */
  ready(port: number, child: Child): Promise<boolean>;
  url(port: number): string;
  logFile: string | undefined;
  cleanup?: () => Promise<void>;
}

/** Spawns and waits for readiness; retries on a new port if an auto-picked port was taken meanwhile. */
async function launch(l: Launch, fixedPort: number | undefined): Promise<ServerHandle> {
  for (let attempt = 0; ; attempt++) {
    const port = fixedPort || (await freePort());
    const child = new Child(l.bin, l.args(port), l.logFile, await fileSize(l.logFile));
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let ok = false;
    while (!child.hasExited && Date.now() < deadline) {
      if (await l.ready(port, child)) {
        ok = true;
        break;
      }
      await sleep(50);
    }
    if (ok && !child.hasExited) return handle(child, l, port);

    const timedOut = !child.hasExited;
    if (timedOut) {
      child.kill('SIGKILL');
      await child.exited;
    }
    const out = await child.recentOutput();
    const portTaken = new RegExp(`127\\.0\\.0\\.1:${port}\\b.*address already in use`, 'i').test(out);
    if (!timedOut && portTaken && !fixedPort && attempt < PORT_RETRIES) continue;
    await l.cleanup?.();
    const why = child.spawnError
      ? `could not run ${l.bin}: ${child.spawnError.message}`
      : timedOut
        ? `not ready within ${READY_TIMEOUT_MS} ms`
        : `exited early (code ${String(child.proc.exitCode)}, signal ${String(child.proc.signalCode)})`;
    throw new AdaggError(ErrorCode.ServerStart, `${l.what} on port ${port} ${why}\n${out}`, {
      cause: child.spawnError,
      details: { server: l.what, port, output: out },
    });
  }
}

function handle(child: Child, l: Launch, port: number): ServerHandle {
  let stopped: Promise<void> | undefined;
  return {
    url: l.url(port),
    port,
    pid: child.proc.pid ?? -1,
    exited: child.exited,
    kill: (signal) => child.kill(signal),
    stopNow: () => child.stopNow(),
    stop: () => (stopped ??= child.stop().then(() => l.cleanup?.())),
  };
}

/**
 * Starts nats-server with JetStream on 127.0.0.1. Ready once its ports file (proof that this child
 * bound the port) exists and an `INFO` line is read from the port; otherwise throws
 * `AdaggError(ServerStart)` with the last lines of its output.
 */
export async function startNatsServer(opts: NatsServerOptions): Promise<ServerHandle> {
  await mkdir(opts.storeDir, { recursive: true });
  // nats-server writes <name>_<pid>.ports here after listening, and removes it on shutdown.
  const portsDir = await mkdtemp(path.join(os.tmpdir(), 'adagg-nats-ports-'));
  tempDirs.add(portsDir);
  const ownsPort = async (pid: number | undefined) =>
    (await readdir(portsDir).catch(() => [] as string[])).some((f) => f.endsWith(`_${String(pid)}.ports`));
  return launch(
    {
      what: 'nats-server',
      bin: findBinary('nats-server', 'ADAGG_NATS_SERVER'),
      logFile: opts.logFile,
      url: (port) => `nats://127.0.0.1:${port}`,
      // Never pass -p 0: nats-server reads it as "default port 4222".
      args: (port) => [
        '-a', '127.0.0.1', '-p', String(port), '-js', '-sd', opts.storeDir, '--ports_file_dir', portsDir,
        ...(opts.serverName ? ['--server_name', opts.serverName] : []),
        ...(opts.logFile ? ['-l', opts.logFile] : []),
        ...(opts.cluster
          ? [
              '--cluster', `nats://127.0.0.1:${opts.cluster.port}`, '--cluster_name', opts.cluster.name,
              ...(opts.cluster.routes.length > 0 ? ['--routes', opts.cluster.routes.join(',')] : []),
            ]
          : []),
      ],
      ready: async (port, child) =>
        (await ownsPort(child.proc.pid)) &&
        (await probe(port, undefined, (b) => b.includes('\n')))?.startsWith('INFO ') === true,
      cleanup: async () => {
        tempDirs.delete(portsDir);
        await rm(portsDir, { recursive: true, force: true });
      },
    },
    opts.port,
  );
}

/**
 * Starts redis-server on 127.0.0.1 (AOF on by default, RDB snapshots off). Ready once PING answers
 * PONG and `INFO server` reports this child's pid; otherwise throws `AdaggError(ServerStart)`.
 */
export async function startRedisServer(opts: RedisServerOptions): Promise<ServerHandle> {
  await mkdir(opts.dir, { recursive: true });
  const aof = opts.appendOnly ?? true;
  return launch(
    {
      what: 'redis-server',
      bin: findBinary('redis-server', 'ADAGG_REDIS_SERVER'),
      logFile: opts.logFile,
      url: (port) => `redis://127.0.0.1:${port}`,
      args: (port) => [
        '--port', String(port), '--bind', '127.0.0.1', '--dir', opts.dir,
        '--appendonly', aof ? 'yes' : 'no', '--appendfsync', 'everysec', '--save', '', '--daemonize', 'no',
        ...(opts.logFile ? ['--logfile', opts.logFile] : []),
      ],
      // A LOADING reply (AOF replay) fails the PONG check and we poll again; the pid check makes
      // sure the answer comes from this child, not another process that took the port.
      ready: async (port, child) => {
        const reply = await probe(port, 'PING\r\nINFO server\r\n', (b) => /\r\nprocess_id:\d+\r\n/.test(b));
        return reply?.startsWith('+PONG\r\n') === true && reply.includes(`\r\nprocess_id:${String(child.proc.pid)}\r\n`);
      },
    },
    opts.port,
  );
}
