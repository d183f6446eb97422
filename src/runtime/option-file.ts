import { readFileSync } from 'node:fs';
import { OptionError } from '../errors.ts';

/**
 * Reads a file an option names (a key, certificate, seed or creds file) when the connection is
 * built, so a missing or unreadable file fails the start as ADAGG_E_BAD_OPTION naming the option,
 * not later as a failed handshake.
 */
export function readOptionFile(key: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new OptionError(key, `cannot read ${file}: ${(err as Error).message}`);
  }
}
