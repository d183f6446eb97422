/**
 * The one way adagg connects to NATS: servers, credentials and TLS from the options (or a URL alone).
 *
 * Credentials come from, in this order: a creds file (`NATS_CREDS`), an NKEY seed file
 * (`NATS_NKEY_SEED_FILE`), `NATS_TOKEN`, `NATS_USER`/`NATS_PASSWORD`, or the first server URL that
 * carries them (`nats://user:pass@host`, `nats://token@host`). The client ignores credentials in a
 * URL, so they are parsed out here and passed as options. Any `NATS_TLS_*` makes TLS required.
 *
 * @example
 * const nc = await connectNats({ natsUrl: 'nats://svc:secret@nats-1:4222,nats://nats-2:4222' }, 'adagg-node-a');
 */
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
  type TlsOptions,
} from '@nats-io/transport-node';
import { AdaggError, ErrorCode, OptionError } from '../errors.ts';
import type { CompiledOptions } from '../options.ts';
import { readOptionFile } from './option-file.ts';

const CONNECT_TIMEOUT_MS = 10_000;

type NatsOptionKeys = 'natsUser' | 'natsPassword' | 'natsToken' | 'natsNkeySeedFile' | 'natsCreds' | 'natsTlsCa' | 'natsTlsCert' | 'natsTlsKey';

/** What connectNats reads: the servers and, optionally, credentials and TLS files. */
export type NatsConnectOptions = Partial<Pick<CompiledOptions, NatsOptionKeys>> & { natsUrl: string };

/**
 * Connects to NATS. `target` is the options (or a bare URL list, credentials in it honoured); the
 * URL may be a comma-separated list (a cluster). `noAsyncTraces` skips building Error objects per
 * request (measured 1.6-1.9x publish throughput, see shared NATS notes). A refused or unreachable
 * server fails at once with ADAGG_E_NATS_UNAVAILABLE naming the servers (passwords redacted); a
 * bad option (a missing file, user without password) with ADAGG_E_BAD_OPTION.
 */
export async function connectNats(target: string | NatsConnectOptions, name: string): Promise<NatsConnection> {
  const o = typeof target === 'string' ? { natsUrl: target } : target;
  const opts: ConnectionOptions = {
    ...natsConnectionOptions(o),
    name,
    noAsyncTraces: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    // A refused TLS client certificate is not reported by the client: it waits out this timeout
    // (20 s by default), so keep it short enough for a start to fail visibly.
    timeout: CONNECT_TIMEOUT_MS,
  };
  try {
    return await connect(opts);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new AdaggError(ErrorCode.NatsUnavailable, `cannot connect to NATS at ${redactServers(o.natsUrl)}: ${why}`, { cause: err });
  }
}

/** The client options for servers, credentials and TLS (exported for tests). */
export function natsConnectionOptions(o: NatsConnectOptions): ConnectionOptions {
  const parsed = o.natsUrl.split(',').map((s) => s.trim()).filter(Boolean).map(splitCredentials);
  if (parsed.length === 0) throw new OptionError('natsUrl', 'must name at least one server');
  const out: ConnectionOptions = { servers: parsed.map((p) => p.server) };
  const fromUrl = parsed.find((p) => p.user !== undefined);
  if (o.natsCreds !== undefined) {
    out.authenticator = credsAuthenticator(readOptionFile('natsCreds', o.natsCreds));
  } else if (o.natsNkeySeedFile !== undefined) {
    const seed = new TextDecoder().decode(readOptionFile('natsNkeySeedFile', o.natsNkeySeedFile)).trim();
    if (!/^SU[A-Z2-7]+$/.test(seed)) throw new OptionError('natsNkeySeedFile', `${o.natsNkeySeedFile} does not hold a user NKEY seed (SU…)`);
    out.authenticator = nkeyAuthenticator(new TextEncoder().encode(seed));
  } else if (o.natsToken !== undefined) {
    out.token = o.natsToken;
  } else if (o.natsUser !== undefined) {
    if (o.natsPassword === undefined) throw new OptionError('natsPassword', 'must be set with NATS_USER');
    out.user = o.natsUser;
    out.pass = o.natsPassword;
  } else if (fromUrl?.pass !== undefined) {
    out.user = fromUrl.user;
    out.pass = fromUrl.pass;
  } else if (fromUrl?.user !== undefined) {
    out.token = fromUrl.user;
  }
  if (o.natsPassword !== undefined && o.natsUser === undefined) throw new OptionError('natsUser', 'must be set with NATS_PASSWORD');
  const tls = tlsOptions(o);
  if (tls) out.tls = tls;
  return out;
}

function tlsOptions(o: NatsConnectOptions): TlsOptions | undefined {
  if (o.natsTlsCa === undefined && o.natsTlsCert === undefined && o.natsTlsKey === undefined) return undefined;
  if ((o.natsTlsCert === undefined) !== (o.natsTlsKey === undefined)) {
    throw new OptionError(o.natsTlsCert === undefined ? 'natsTlsCert' : 'natsTlsKey', 'NATS_TLS_CERT and NATS_TLS_KEY go together');
  }
  // Read now, so a missing file is an option error at start rather than a failed TLS handshake.
  const text = (key: NatsOptionKeys, file: string | undefined): string | undefined =>
    file === undefined ? undefined : new TextDecoder().decode(readOptionFile(key, file));
  const tls: TlsOptions = {};
  const ca = text('natsTlsCa', o.natsTlsCa);
  const cert = text('natsTlsCert', o.natsTlsCert);
  const key = text('natsTlsKey', o.natsTlsKey);
  if (ca !== undefined) tls.ca = ca;
  if (cert !== undefined) tls.cert = cert;
  if (key !== undefined) tls.key = key;
  return tls;
}

/** `nats://u:p@h:1` → server `nats://h:1` plus the decoded user and password (or token as user). */
function splitCredentials(server: string): { server: string; user?: string; pass?: string } {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)?([^@/]*)@(.*)$/i.exec(server);
  if (!m) return { server };
  const [, scheme = '', auth = '', rest = ''] = m;
  const colon = auth.indexOf(':');
  const plain = `${scheme}${rest}`;
  if (colon < 0) return { server: plain, user: decodeURIComponent(auth) };
  return { server: plain, user: decodeURIComponent(auth.slice(0, colon)), pass: decodeURIComponent(auth.slice(colon + 1)) };
}

/** A server list for messages: credentials in URLs replaced by `***`. */
export function redactServers(url: string): string {
  return url.replace(/\/\/[^@/,]*@/g, '//***@');
}
