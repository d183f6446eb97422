/**
 * Reads and checks ADAGG_TOKENS_FILE:
 *
 * ```json
 * {"tokens":[{"name":"billing-etl","sha256":"<hex SHA-256 of the token>","scopes":["read","jobs"]}]}
 * ```
 *
 * Every problem is an ADAGG_E_BAD_OPTION naming the file and the entry, so a typo fails the start
 * (or is reported on reload) instead of silently locking a client out.
 */
import { readFile } from 'node:fs/promises';
import { OptionError } from '../../errors.ts';
import { SCOPES, type Scope } from '../principal.ts';

/** One token of the file: its name (in logs and as the job owner), digest and scopes. */
export interface TokenEntry {
  readonly name: string;
  /** SHA-256 of the token, 32 bytes. */
  readonly digest: Buffer;
  readonly scopes: ReadonlySet<Scope>;
}

const HEX64 = /^[0-9a-fA-F]{64}$/;
const NAME = /^[\x21-\x7e]{1,64}$/;
/** A file this large is not a tokens file; refusing it bounds what a reload reads. */
const MAX_FILE_BYTES = 1024 * 1024;

const fail = (file: string, message: string): OptionError => new OptionError('tokensFile', `${file}: ${message}`);

/** Parses and checks a tokens file's text; throws ADAGG_E_BAD_OPTION naming the problem. */
export function parseTokensFile(text: string, file: string): TokenEntry[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw fail(file, `is not valid JSON (${(err as Error).message})`);
  }
  if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as { tokens?: unknown }).tokens)) {
    throw fail(file, 'must be a JSON object {"tokens":[{"name","sha256","scopes"}]}');
  }
  const tokens = (doc as { tokens: unknown[] }).tokens;
  if (tokens.length === 0) throw fail(file, 'lists no tokens');
  const names = new Set<string>();
  const digests = new Set<string>();
  return tokens.map((t, i) => {
    const at = `tokens[${i}]`;
    if (typeof t !== 'object' || t === null || Array.isArray(t)) throw fail(file, `${at} must be an object`);
    const { name, sha256, scopes } = t as Record<string, unknown>;
    if (typeof name !== 'string' || !NAME.test(name)) throw fail(file, `${at}.name must be 1-64 printable ASCII characters without spaces`);
    if (names.has(name)) throw fail(file, `${at}.name "${name}" is used twice`);
    names.add(name);
    if (typeof sha256 !== 'string' || !HEX64.test(sha256)) {
      throw fail(file, `${at}.sha256 (${name}) must be the token's SHA-256 as 64 hex characters, not the token itself`);
    }
    const hex = sha256.toLowerCase();
    if (digests.has(hex)) throw fail(file, `${at}.sha256 (${name}) repeats another token's hash`);
    digests.add(hex);
    if (!Array.isArray(scopes) || scopes.length === 0) throw fail(file, `${at}.scopes (${name}) must be a non-empty array of ${SCOPES.join(', ')}`);
    for (const s of scopes) {
      if (!(SCOPES as readonly unknown[]).includes(s)) throw fail(file, `${at}.scopes (${name}) has unknown scope ${JSON.stringify(s)}; scopes are ${SCOPES.join(', ')}`);
    }
    return { name, digest: Buffer.from(hex, 'hex'), scopes: new Set(scopes as Scope[]) };
  });
}

/** Reads and checks a tokens file; throws ADAGG_E_BAD_OPTION naming the problem. */
export async function readTokensFile(file: string): Promise<TokenEntry[]> {
  let text: string;
  try {
    const buf = await readFile(file);
    if (buf.length > MAX_FILE_BYTES) throw fail(file, `is larger than ${MAX_FILE_BYTES} bytes`);
    text = buf.toString('utf8');
  } catch (err) {
    if (err instanceof OptionError) throw err;
    throw fail(file, `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return parseTokensFile(text, file);
}
