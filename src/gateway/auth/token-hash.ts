/**
 * How a bearer token is stored and matched: only its SHA-256 is kept (ADAGG_TOKENS_FILE holds the
 * hex digest, never the token), and a presented token is matched by comparing digests in constant
 * time, so neither the file nor response timing gives a token away.
 *
 * @example
 * sha256Hex('s3cret'); // the value to write as "sha256" in ADAGG_TOKENS_FILE
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/** The SHA-256 of a token as 64 lowercase hex characters (the tokens file's `sha256`). */
export function sha256Hex(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The SHA-256 of a token as 32 bytes. */
export function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** Whether two 32-byte digests are equal, in time independent of where they differ. */
export function digestsEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
