/**
 * The local dev token of `adagg start` (`npm start`): with authentication on and no
 * ADAGG_TOKENS_FILE, a random token is made once, kept under ADAGG_DATA_DIR (mode 0600) and reused
 * on every later start, with a tokens file of all scopes next to it. The ready line prints it and a
 * dashboard URL carrying it in the fragment (never sent to a server, so never in an access log).
 *
 * @example
 * const dev = await devAuth(o);
 * const gateway = new GatewayService({ ...o, ...dev.options, natsUrl, redisUrl }, deps);
 * log.info({ url, ...dev.readyFields(url) }, 'adagg is ready');
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { checkAuthOptions, isLoopback } from '../gateway/auth/auth-setup.ts';
import { sha256Hex } from '../gateway/auth/token-hash.ts';
import { SCOPES } from '../gateway/principal.ts';
import type { CompiledOptions } from '../options.ts';

/** The token file and the tokens file, in ADAGG_DATA_DIR. */
export const DEV_TOKEN_FILE = 'dev-token';
export const DEV_TOKENS_FILE = 'dev-tokens.json';
/** 32 random bytes as base64url: 43 characters, usable in a header and a WebSocket subprotocol. */
const TOKEN = /^[A-Za-z0-9_-]{43}$/;

export interface DevAuth {
  /** Options for the gateway: the dev tokens file when one is used, else none. */
  options: { tokensFile?: string };
  /** The dev token, when one is used. */
  token?: string;
  /** Fields for the ready log line: the token and the dashboard URL that carries it. */
  readyFields(url: string): { token?: string; dashboard?: string };
  /** Lines for the ready message on stdout (none without a dev token). */
  readyLines(url: string): string[];
}

/**
 * The dev token when `adagg start` needs one: authentication on, no ADAGG_TOKENS_FILE, and a
 * loopback bind (or ADAGG_INSECURE=1). Otherwise nothing; an unsafe configuration (a non-loopback
 * bind with authentication off or without tokens) throws ADAGG_E_BAD_OPTION.
 */
export async function devAuth(o: Pick<CompiledOptions, 'auth' | 'tokensFile' | 'httpHost' | 'insecure' | 'dataDir' | 'allowedOrigins'>): Promise<DevAuth> {
  if (o.auth !== 'on' || o.tokensFile !== undefined || (!isLoopback(o.httpHost) && o.insecure !== 1)) {
    // Refused here, before the node starts, rather than by the gateway after it.
    checkAuthOptions(o);
    return { options: {}, readyFields: () => ({}), readyLines: () => [] };
  }
  const { token, tokensFile } = await ensureDevToken(o.dataDir);
  return {
    options: { tokensFile },
    token,
    readyFields: (url) => ({ token, dashboard: `${url}/#token=${token}` }),
    readyLines: (url) => [
      `  dashboard   ${url}/#token=${token}`,
      `  token       ${token}   (dev token, every scope: Authorization: Bearer <token>; kept in ${path.join(path.resolve(o.dataDir), DEV_TOKEN_FILE)})`,
    ],
  };
}

/** Reads the dev token under `dataDir`, or makes it; (re)writes the tokens file beside it. */
export async function ensureDevToken(dataDir: string): Promise<{ token: string; tokenFile: string; tokensFile: string; created: boolean }> {
  const dir = path.resolve(dataDir);
  await mkdir(dir, { recursive: true });
  const tokenFile = path.join(dir, DEV_TOKEN_FILE);
  const tokensFile = path.join(dir, DEV_TOKENS_FILE);
  let token = await readToken(tokenFile);
  const created = token === undefined;
  if (token === undefined) {
    token = newDevToken();
    await writePrivate(tokenFile, `${token}\n`);
  } else if (((await stat(tokenFile)).mode & 0o077) !== 0) {
    // Someone loosened it: only this user may read a token with every scope.
    await chmod(tokenFile, 0o600);
  }
  const doc = { tokens: [{ name: 'dev', sha256: sha256Hex(token), scopes: [...SCOPES] }] };
  await writePrivate(tokensFile, `${JSON.stringify(doc, null, 2)}\n`);
  return { token, tokenFile, tokensFile, created };
}

/**
 * 32 random bytes as base64url that do not start with '-': such a token would read as an option
 * in `adagg ingest --token TOKEN` (node:util parseArgs refuses it as ambiguous), one token in 64.
 * The first character is drawn again until it is not '-' (63 of its 64 values stay possible).
 */
export function newDevToken(random: (n: number) => Uint8Array = randomBytes): string {
  for (;;) {
    const t = Buffer.from(random(32)).toString('base64url');
    if (!t.startsWith('-')) return t;
  }
}

async function readToken(file: string): Promise<string | undefined> {
  try {
    const t = (await readFile(file, 'utf8')).trim();
    return TOKEN.test(t) ? t : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Writes mode 0600 from the first byte (a temporary file renamed into place). */
async function writePrivate(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, file);
}
