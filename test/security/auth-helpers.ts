/** Tokens, tokens files and a back-end-less gateway with authentication, for the auth tests. */
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance, RouteOptions } from 'fastify';
import type { AuthPluginOptions } from '../../src/gateway/auth/auth-plugin.ts';
import { sha256Hex } from '../../src/gateway/auth/token-hash.ts';
import type { Scope } from '../../src/gateway/principal.ts';
import { GATEWAY_OPTIONS, offlineGateway } from '../helpers/offline-gateway.ts';

/** One token per single scope, plus admin; the token text is `tok-<name>`. */
export const TOKENS = {
  ingest: 'tok-ingest-0123456789',
  read: 'tok-read-0123456789',
  jobs: 'tok-jobs-0123456789',
  metrics: 'tok-metrics-0123456789',
  admin: 'tok-admin-0123456789',
} as const satisfies Record<Scope, string>;

export interface TokenSpec {
  name: string;
  token: string;
  scopes: Scope[];
}

export const STANDARD: TokenSpec[] = (Object.entries(TOKENS) as Array<[Scope, string]>).map(([scope, token]) => ({ name: `only-${scope}`, token, scopes: [scope] }));

/** The JSON of a tokens file for these tokens (hashes only). */
export function tokensJson(specs: readonly TokenSpec[]): string {
  return JSON.stringify({ tokens: specs.map((t) => ({ name: t.name, sha256: sha256Hex(t.token), scopes: t.scopes })) });
}

/** A new temp dir. */
export function tempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'adagg-auth-'));
}

/** Writes a tokens file into `dir` and returns its path. */
export async function writeTokensFile(dir: string, specs: readonly TokenSpec[], name = 'tokens.json'): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, tokensJson(specs));
  return file;
}

/**
 * The real gateway (routes, schemas, hooks) with no back ends and the given auth options; every
 * route it registers is collected through fastify's onRoute hook before the routes load.
 */
export function authGateway(auth: AuthPluginOptions): { app: FastifyInstance; routes: RouteOptions[] } {
  const app = offlineGateway(GATEWAY_OPTIONS, { auth });
  const routes: RouteOptions[] = [];
  // Added before ready(): the route plugins load later, so every route passes through here.
  app.addHook('onRoute', (r) => {
    routes.push(r);
  });
  return { app, routes };
}

/** A concrete request path for a route URL pattern. */
export function concretePath(url: string): string {
  return url
    .replace(':ad_id', 'ad1')
    .replace(':file', 'app.js')
    .replace(/:[A-Za-z_]+/g, 'x1')
    .replace(/^\*$/, '/anything');
}
