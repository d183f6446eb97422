/**
 * What the gateway refuses at start (issue 11, "What to build" 1): auth on without tokens, auth
 * off on a non-loopback bind, and a bad tokens file; each an ADAGG_E_BAD_OPTION naming the
 * problem. Also the tokens file's rules and the token store's matching.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { actorRegistry } from '../../src/actors/index.ts';
import { isLoopback, openAuth } from '../../src/gateway/auth/auth-setup.ts';
import { sha256Hex } from '../../src/gateway/auth/token-hash.ts';
import { TokenStore } from '../../src/gateway/auth/token-store.ts';
import { parseTokensFile } from '../../src/gateway/auth/tokens-file.ts';
import { GatewayService } from '../../src/gateway/gateway-service.ts';
import { compileOptions, DEFAULTS, type AdaggOptions } from '../../src/options.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { STANDARD, TOKENS, tempDir, writeTokensFile } from './auth-helpers.ts';

/** A gateway whose start is refused before it connects anywhere (the URLs lead nowhere). */
async function startRefusal(o: AdaggOptions): Promise<{ code?: string; message: string }> {
  const gw = new GatewayService(
    { ...compileOptions({ httpPort: 0, ...o }), natsUrl: 'nats://127.0.0.1:1', redisUrl: 'redis://127.0.0.1:1' },
    { actors: actorRegistry, log: silentLogger },
  );
  try {
    await gw.start();
    throw new Error('start did not refuse');
  } catch (err) {
    return { code: (err as { code?: string }).code, message: (err as Error).message };
  } finally {
    await gw.close();
  }
}

const HEX = sha256Hex('x');

describe('refused starts', () => {
  it('refuses auth on without ADAGG_TOKENS_FILE, before connecting anywhere', async () => {
    const r = await startRefusal({});
    expect(r.code).toBe('ADAGG_E_BAD_OPTION');
    expect(r.message).toContain('ADAGG_TOKENS_FILE');
  });

  it('refuses ADAGG_AUTH=off on a non-loopback bind unless ADAGG_INSECURE=1', async () => {
    for (const host of ['0.0.0.0', '::', '192.168.1.10']) {
      const r = await startRefusal({ auth: 'off', httpHost: host });
      expect(r.code, host).toBe('ADAGG_E_BAD_OPTION');
      expect(r.message, host).toContain('ADAGG_INSECURE=1');
    }
    const o = { ...DEFAULTS, auth: 'off', httpHost: '0.0.0.0', insecure: 1 };
    await expect(openAuth(o, silentLogger)).resolves.toMatchObject({ mode: 'off' });
    await expect(openAuth({ ...DEFAULTS, auth: 'off' }, silentLogger)).resolves.toMatchObject({ mode: 'off' });
  });

  it('refuses a missing or invalid tokens file, naming the problem', async () => {
    const dir = await tempDir();
    const missing = await startRefusal({ tokensFile: path.join(dir, 'nope.json') });
    expect(missing).toMatchObject({ code: 'ADAGG_E_BAD_OPTION', message: expect.stringContaining('nope.json') });
    const bad = path.join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ tokens: [{ name: 'ci', sha256: 'my-plain-token', scopes: ['read'] }] }));
    const r = await startRefusal({ tokensFile: bad });
    expect(r.code).toBe('ADAGG_E_BAD_OPTION');
    expect(r.message).toMatch(/tokens\[0\]\.sha256 \(ci\).*64 hex/);
  });

  it('checks ADAGG_ALLOWED_ORIGINS and ADAGG_INSECURE as options', () => {
    expect(() => compileOptions({ allowedOrigins: '*' })).toThrow(/allowedOrigins.*no wildcard/);
    expect(() => compileOptions({ allowedOrigins: 'https://a.example/path' })).toThrow(/allowedOrigins/);
    expect(compileOptions({ allowedOrigins: 'https://a.example, http://b.example:8080' }).allowedOrigins).toEqual(['https://a.example', 'http://b.example:8080']);
    expect(() => compileOptions({ insecure: '2' })).toThrow(/insecure/);
  });

  it('knows loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) expect(isLoopback(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.com', '128.0.0.1']) expect(isLoopback(h), h).toBe(false);
  });
});

describe('the tokens file', () => {
  const parse = (doc: unknown): (() => unknown) => () => parseTokensFile(JSON.stringify(doc), 'tokens.json');
  const entry = (o: Record<string, unknown> = {}) => ({ name: 'a', sha256: HEX, scopes: ['read'], ...o });

  it('names each problem', () => {
    expect(() => parseTokensFile('{', 'tokens.json')).toThrow(/tokens\.json: is not valid JSON/);
    expect(parse([])).toThrow(/must be a JSON object/);
    expect(parse({ tokens: [] })).toThrow(/lists no tokens/);
    expect(parse({ tokens: [entry({ name: '' })] })).toThrow(/tokens\[0\]\.name/);
    expect(parse({ tokens: [entry(), entry({ sha256: sha256Hex('y') })] })).toThrow(/"a" is used twice/);
    expect(parse({ tokens: [entry(), entry({ name: 'b' })] })).toThrow(/repeats another token's hash/);
    expect(parse({ tokens: [entry({ scopes: [] })] })).toThrow(/non-empty array/);
    expect(parse({ tokens: [entry({ scopes: ['read', 'root'] })] })).toThrow(/unknown scope "root"/);
    try {
      parse({ tokens: [entry({ scopes: ['nope'] })] })();
    } catch (err) {
      expect((err as { code?: string }).code).toBe('ADAGG_E_BAD_OPTION');
    }
  });

  it('accepts upper-case hex and expands admin to every scope', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 't.json');
    await writeFile(file, JSON.stringify({ tokens: [{ name: 'ops', sha256: sha256Hex('ops-token').toUpperCase(), scopes: ['admin'] }] }));
    const store = await TokenStore.open(file);
    expect([...(store.authenticate('ops-token')?.scopes ?? [])].sort()).toEqual(['admin', 'ingest', 'jobs', 'metrics', 'read']);
    expect(store.authenticate('ops-token ')).toBeUndefined();
    expect(store.authenticate('')).toBeUndefined();
  });

  it('matches each token to its own entry only', async () => {
    const store = await TokenStore.open(await writeTokensFile(await tempDir(), STANDARD));
    expect(store.size).toBe(5);
    for (const t of STANDARD) expect(store.authenticate(t.token)?.name).toBe(t.name);
    expect(store.authenticate(TOKENS.read.slice(0, -1))).toBeUndefined();
  });
});
