import { SCOPES, type Principal, type Scope } from '../principal.ts';
import { digestsEqual, tokenDigest } from './token-hash.ts';
import { readTokensFile, type TokenEntry } from './tokens-file.ts';

/**
 * The gateway's bearer tokens, from ADAGG_TOKENS_FILE. `authenticate` hashes the presented token
 * and compares it with every entry in constant time (no early exit: how far the scan got says
 * nothing). `reload` swaps the whole set at once, and only when the new file is valid.
 *
 * @example
 * const store = await TokenStore.open('/etc/adagg/tokens.json');
 * store.authenticate(bearer); // { name: 'billing-etl', scopes: Set {'read','jobs'} } or undefined
 */
export class TokenStore {
  private tokens: ReadonlyArray<{ principal: Principal; digest: Buffer }> = [];

  private constructor(readonly file: string) {}

  /** Reads the file; throws ADAGG_E_BAD_OPTION naming the problem. */
  static async open(file: string): Promise<TokenStore> {
    const store = new TokenStore(file);
    await store.reload();
    return store;
  }

  /** Tokens currently accepted. */
  get size(): number {
    return this.tokens.length;
  }

  /**
   * Re-reads the file. A bad file throws ADAGG_E_BAD_OPTION and leaves the current tokens in place,
   * so a mistake during rotation never locks every client out.
   */
  async reload(): Promise<void> {
    this.install(await readTokensFile(this.file));
  }

  /** The principal a token stands for, or undefined for an unknown token. */
  authenticate(token: string): Principal | undefined {
    const d = tokenDigest(token);
    let found: Principal | undefined;
    for (const t of this.tokens) {
      if (digestsEqual(d, t.digest) && found === undefined) found = t.principal;
    }
    return found;
  }

  private install(tokens: readonly TokenEntry[]): void {
    this.tokens = tokens.map((t) => ({ principal: Object.freeze({ name: t.name, scopes: withImplied(t.scopes) }), digest: t.digest }));
  }
}

/** `admin` implies every scope; stored expanded so checks are a plain set lookup. */
function withImplied(scopes: ReadonlySet<Scope>): ReadonlySet<Scope> {
  return scopes.has('admin') ? new Set<Scope>(SCOPES) : new Set(scopes);
}
