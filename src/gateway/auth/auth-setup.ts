/**
 * Authentication at gateway start: the rules that refuse an unsafe configuration, and the token
 * store. Refusing beats a warning here: a gateway reachable from the network without credentials
 * serves ingest, counts and per-user query jobs to anyone.
 */
import { OptionError } from '../../errors.ts';
import type { CompiledOptions } from '../../options.ts';
import type { Logger } from '../../runtime/logger.ts';
import type { AuthPluginOptions } from './auth-plugin.ts';
import { TokenStore } from './token-store.ts';

export type AuthOptions = Pick<CompiledOptions, 'auth' | 'httpHost' | 'insecure' | 'allowedOrigins'> & { tokensFile?: string | undefined };

/** What the gateway authenticates with: the plugin's options, and the store to reload. */
export interface AuthSetup extends AuthPluginOptions {
  tokens?: TokenStore | undefined;
}

/** Whether an address only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * Checks the options and opens ADAGG_TOKENS_FILE. Throws ADAGG_E_BAD_OPTION when:
 * - `auth` is `on` and no `tokensFile` is set (`adagg start` makes a dev token instead);
 * - `auth` is `off` on a non-loopback `httpHost`, unless `insecure` is 1;
 * - the tokens file is missing or invalid.
 */
export async function openAuth(o: AuthOptions, log: Logger): Promise<AuthSetup> {
  checkAuthOptions(o);
  if (o.auth === 'off') {
    log.warn({ host: o.httpHost, insecure: o.insecure === 1 }, 'authentication is off (ADAGG_AUTH=off): every route is open to whoever can reach the gateway');
    return { mode: 'off', allowedOrigins: o.allowedOrigins };
  }
  const tokens = await TokenStore.open(o.tokensFile!);
  log.info({ file: o.tokensFile, tokens: tokens.size }, 'bearer tokens loaded');
  return { mode: 'on', tokens, allowedOrigins: o.allowedOrigins };
}

/** The start rules of {@link openAuth} alone (no file read): throws ADAGG_E_BAD_OPTION. */
export function checkAuthOptions(o: AuthOptions): void {
  if (o.auth === 'off') {
    if (!isLoopback(o.httpHost) && o.insecure !== 1) {
      throw new OptionError(
        'auth',
        `ADAGG_AUTH=off on ${o.httpHost}, a non-loopback address, would serve every route to anyone who can reach it; bind 127.0.0.1, use ADAGG_TOKENS_FILE, or set ADAGG_INSECURE=1`,
      );
    }
    return;
  }
  if (o.tokensFile === undefined) {
    throw new OptionError(
      'tokensFile',
      'ADAGG_AUTH=on (the default) needs ADAGG_TOKENS_FILE, a JSON file of token hashes and scopes (docs/security.md); `adagg start` makes a local dev token instead (on a loopback bind, or with ADAGG_INSECURE=1), and ADAGG_AUTH=off turns authentication off on a loopback bind',
    );
  }
}

/**
 * Re-reads the tokens file (SIGHUP). A bad file is logged and the old tokens stay; resolves to
 * whether the new file took effect (false too when authentication is off).
 */
export async function reloadTokens(tokens: TokenStore | undefined, log: Logger): Promise<boolean> {
  if (tokens === undefined) {
    log.warn('no tokens to reload: authentication is off');
    return false;
  }
  try {
    await tokens.reload();
    log.info({ file: tokens.file, tokens: tokens.size }, 'bearer tokens reloaded');
    return true;
  } catch (err) {
    log.error({ err, file: tokens.file }, 'bearer tokens not reloaded: the file is invalid; the previous tokens stay in use');
    return false;
  }
}
