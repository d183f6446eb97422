/**
 * The dev token of `adagg start` never starts with '-': `adagg ingest --token TOKEN` would read such
 * a token as an option and exit 2 (usage), one token in 64 (it failed a CI run of auth-cli.test.ts).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ensureDevToken, newDevToken } from '../../src/cli/dev-token.ts';

describe('dev token', () => {
  it('draws again when the first character would be "-"', () => {
    const draws = [new Uint8Array(32).fill(0xf8), new Uint8Array(32).fill(0)]; // 0xf8 >> 2 = 62: '-'
    expect(Buffer.from(draws[0]!).toString('base64url')[0]).toBe('-');
    let calls = 0;
    const t = newDevToken((n) => {
      expect(n).toBe(32);
      return draws[calls++]!;
    });
    expect(calls).toBe(2);
    expect(t).toBe(Buffer.from(draws[1]!).toString('base64url'));
  });

  it('2,000 real tokens: 43 base64url characters, none starting with "-", each parsed as the value of --token', () => {
    for (let i = 0; i < 2000; i++) {
      const t = newDevToken();
      expect(t).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_-]{42}$/);
      const { values } = parseArgs({ args: ['--token', t, 'f.ndjson'], allowPositionals: true, options: { token: { type: 'string' } } });
      expect(values.token).toBe(t);
    }
  });

  it('is made once under the data dir and reused', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-dev-token-'));
    try {
      const a = await ensureDevToken(dir);
      const b = await ensureDevToken(dir);
      expect(a.created).toBe(true);
      expect(b.created).toBe(false);
      expect(b.token).toBe(a.token);
      expect((await readFile(path.join(dir, 'dev-token'), 'utf8')).trim()).toBe(a.token);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
