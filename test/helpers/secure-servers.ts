/**
 * Real nats-server and redis-server with authorization and TLS on, on free loopback ports in temp
 * dirs, for the transport security tests (test/security/transport-auth.test.ts). Certificates come
 * from `openssl`: one CA, a server certificate for localhost/127.0.0.1, a client certificate.
 *
 * @example
 * const certs = await makeCerts(dir);
 * const nats = await startSecureNats({ dir, auth: { user: 'svc', password: 'pw' }, tls: { certs, verifyClients: true } });
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { nkeys } from '@nats-io/transport-node';
import { freePort } from '../../src/runtime/local-servers.ts';

const run = promisify(execFile);
const READY_TIMEOUT_MS = 15_000;

/** PEM files of a test PKI. */
export interface Certs {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A CA that signed nothing here: trusting it must fail the handshake. */
  otherCa: string;
}

/** A CA, a server certificate (CN localhost, SAN localhost and 127.0.0.1) and a client certificate. */
export async function makeCerts(dir: string): Promise<Certs> {
  const d = path.join(dir, 'pki');
  await mkdir(d, { recursive: true });
  const f = (name: string): string => path.join(d, name);
  const ssl = (...args: string[]): Promise<unknown> => run('openssl', args, { cwd: d });
  const ca = async (name: string): Promise<void> => {
    await ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.pem`), '-days', '2', '-subj', `/CN=${name}`);
  };
  const leaf = async (name: string, cn: string, ext: string): Promise<void> => {
    await ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${cn}`);
    await writeFile(f(`${name}.ext`), ext);
    await ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${name}.pem`), '-days', '2', '-extfile', f(`${name}.ext`));
  };
  await Promise.all([ca('ca'), ca('other-ca')]);
  await leaf('server', 'localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  await leaf('client', 'adagg-client', 'extendedKeyUsage=clientAuth\n');
  return {
    ca: f('ca.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server.key'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
    otherCa: f('other-ca.pem'),
  };
}

/** A running test server. */
export interface SecureServer {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  kill(signal: NodeJS.Signals): void;
  /** SIGCONT (in case it was stopped), SIGTERM, then SIGKILL after 5 s. Idempotent. */
  stop(): Promise<void>;
  /** SIGTERM without waiting. */
  stopNow(): void;
  /** Resolves with the exit code (null when ended by a signal). */
  readonly exited: Promise<number | null>;
}

export type NatsAuth = { user: string; password: string } | { token: string } | { nkey: string } | { operator: OperatorAuth };

/** Decentralized (JWT) authorization: the server's config lines and a user's creds file. */
export interface OperatorAuth {
  /** `operator`, `system_account`, `resolver: MEMORY` and `resolver_preload` lines. */
  serverConfig: string;
  /** A creds file (user JWT + seed) of a user of an account with JetStream enabled. */
  credsFile: string;
  /** A creds file of a user signed by an account the server does not know. */
  strangerCredsFile: string;
}

/** Mints an operator, a system account, an app account with JetStream, and users (nats-server operator mode). */
export async function makeOperatorAuth(dir: string): Promise<OperatorAuth> {
  type Key = ReturnType<typeof nkeys.createOperator>;
  const b64 = (b: Uint8Array | string): string => Buffer.from(b).toString('base64url');
  const jwt = (issuer: Key, sub: string, name: string, nats: object): string => {
    const header = b64(JSON.stringify({ typ: 'JWT', alg: 'ed25519-nkey' }));
    const claims = { jti: randomUUID(), iat: Math.floor(Date.now() / 1000), iss: issuer.getPublicKey(), name, sub, nats };
    const body = b64(JSON.stringify(claims));
    return `${header}.${body}.${b64(issuer.sign(new TextEncoder().encode(`${header}.${body}`)))}`;
  };
  const unlimited = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 };
  const op = nkeys.createOperator();
  const sys = nkeys.createAccount();
  const app = nkeys.createAccount();
  const js = { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 };
  const creds = async (account: Key, file: string): Promise<string> => {
    const user = nkeys.createUser();
    const token = jwt(account, user.getPublicKey(), 'adagg', { pub: {}, sub: {}, subs: -1, data: -1, payload: -1, type: 'user', version: 2 });
    const seed = new TextDecoder().decode(user.getSeed());
    const text = `-----BEGIN NATS USER JWT-----\n${token}\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`;
    const f = path.join(dir, file);
    await writeFile(f, text, { mode: 0o600 });
    return f;
  };
  const serverConfig = [
    `operator: ${jwt(op, op.getPublicKey(), 'test-operator', { type: 'operator', version: 2 })}`,
    `system_account: ${sys.getPublicKey()}`,
    'resolver: MEMORY',
    'resolver_preload: {',
    `  ${sys.getPublicKey()}: ${jwt(op, sys.getPublicKey(), 'SYS', { limits: unlimited, type: 'account', version: 2 })}`,
    `  ${app.getPublicKey()}: ${jwt(op, app.getPublicKey(), 'adagg', { limits: { ...unlimited, ...js }, type: 'account', version: 2 })}`,
    '}',
  ].join('\n');
  return { serverConfig, credsFile: await creds(app, 'adagg.creds'), strangerCredsFile: await creds(nkeys.createAccount(), 'stranger.creds') };
}

export interface SecureNatsOptions {
  dir: string;
  auth?: NatsAuth;
  tls?: { certs: Certs; verifyClients: boolean };
}

/** nats-server with JetStream, the given authorization and optional TLS (mTLS with `verifyClients`). */
export async function startSecureNats(o: SecureNatsOptions): Promise<SecureServer> {
  const dir = path.join(o.dir, `nats-${Math.random().toString(36).slice(2, 8)}`);
  await mkdir(dir, { recursive: true });
  const q = JSON.stringify;
  const auth =
    o.auth === undefined
      ? ''
      : 'user' in o.auth
        ? `authorization { user: ${q(o.auth.user)}, password: ${q(o.auth.password)} }`
        : 'token' in o.auth
          ? `authorization { token: ${q(o.auth.token)} }`
          : 'nkey' in o.auth
            ? `authorization { users: [ { nkey: ${q(o.auth.nkey)} } ] }`
            : o.auth.operator.serverConfig;
  const tls = o.tls
    ? `tls { cert_file: ${q(o.tls.certs.serverCert)}, key_file: ${q(o.tls.certs.serverKey)}, ca_file: ${q(o.tls.certs.ca)}, verify: ${String(o.tls.verifyClients)} }`
    : '';
  return launch('nats-server', async (port) => {
    const conf = path.join(dir, 'nats.conf');
    await writeFile(conf, [`listen: "127.0.0.1:${port}"`, `jetstream { store_dir: ${q(path.join(dir, 'js'))} }`, auth, tls].join('\n'));
    return { bin: findBinary('nats-server'), args: ['-c', conf], ready: /Server is ready/, url: `nats://127.0.0.1:${port}` };
  });
}

export interface SecureRedisOptions {
  dir: string;
  /** ACL users (rules default to `~* &* +@all`); the default user is turned off when any is given. */
  users?: Array<{ name: string; password: string; rules?: string[] }>;
  tls?: { certs: Certs; verifyClients: boolean };
}

/** redis-server 7 with ACL users (default user off) and optional TLS only (no plain port). */
export async function startSecureRedis(o: SecureRedisOptions): Promise<SecureServer> {
  const dir = path.join(o.dir, `redis-${Math.random().toString(36).slice(2, 8)}`);
  await mkdir(dir, { recursive: true });
  const users = o.users?.length
    ? ['--user', 'default', 'off', ...o.users.flatMap((u) => ['--user', u.name, 'on', `>${u.password}`, ...(u.rules ?? ['~*', '&*', '+@all'])])]
    : [];
  return launch('redis-server', (port) => {
    const tls = o.tls
      ? [
          '--port', '0', '--tls-port', String(port),
          '--tls-cert-file', o.tls.certs.serverCert, '--tls-key-file', o.tls.certs.serverKey, '--tls-ca-cert-file', o.tls.certs.ca,
          '--tls-auth-clients', o.tls.verifyClients ? 'yes' : 'no',
        ]
      : ['--port', String(port)];
    const args = ['--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no', ...tls, ...users];
    return Promise.resolve({ bin: findBinary('redis-server'), args, ready: /Ready to accept connections/, url: `${o.tls ? 'rediss' : 'redis'}://127.0.0.1:${port}` });
  });
}

interface Launch {
  bin: string;
  args: string[];
  ready: RegExp;
  url: string;
}

/** Spawns on a free port (retried on a port race) and resolves once the log says it is ready. */
async function launch(what: string, prepare: (port: number) => Promise<Launch>): Promise<SecureServer> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const l = await prepare(port);
    const child = spawn(l.bin, l.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), READY_TIMEOUT_MS);
      const onData = (b: Buffer): void => {
        out += b.toString();
        if (l.ready.test(out)) {
          clearTimeout(timer);
          resolve(true);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(false);
      });
      child.once('error', () => resolve(false));
    });
    if (ok) return handle(child, exited, l.url, port);
    child.kill('SIGKILL');
    if (/address already in use/i.test(out) && attempt < 3) continue;
    throw new Error(`${what} did not start on port ${port}:\n${out.slice(-3000)}`);
  }
}

function handle(child: ChildProcess, exited: Promise<number | null>, url: string, port: number): SecureServer {
  let stopping: Promise<void> | undefined;
  const signal = (s: NodeJS.Signals): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill(s);
  };
  return {
    url,
    port,
    pid: child.pid ?? -1,
    exited,
    kill: signal,
    stopNow: () => signal('SIGTERM'),
    stop: () =>
      (stopping ??= (async () => {
        signal('SIGCONT');
        signal('SIGTERM');
        const killer = setTimeout(() => signal('SIGKILL'), 5000);
        await exited;
        clearTimeout(killer);
      })()),
  };
}

/** On PATH, then in the sbin dirs (Debian puts nats-server in /usr/sbin); the env overrides win. */
function findBinary(name: 'nats-server' | 'redis-server'): string {
  const override = name === 'nats-server' ? process.env.ADAGG_NATS_SERVER : process.env.ADAGG_REDIS_SERVER;
  if (override) return override;
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  return dirs.map((d) => path.join(d, name)).find((p) => existsSync(p)) ?? name;
}
