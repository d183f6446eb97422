import cors from '@fastify/cors';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { AdaggError, ErrorCode } from '../../errors.ts';
import { setPrincipal, type Principal } from '../principal.ts';
import { documentAuth } from './auth-responses.ts';
import { OriginPolicy, normalizeOrigin } from './origin-policy.ts';
import { PUBLIC, requiredScope } from './route-scopes.ts';

/** Anything that maps a bearer token to a caller ({@link TokenStore}). */
export interface Authenticator {
  authenticate(token: string): Principal | undefined;
}

export interface AuthPluginOptions {
  /** `on`: bearer tokens checked against `tokens`; `off`: no authentication (origins still checked). */
  mode: 'on' | 'off';
  /** Required when `mode` is `on`. */
  tokens?: Authenticator | undefined;
  /** Browser origins allowed besides the gateway's own (ADAGG_ALLOWED_ORIGINS). */
  allowedOrigins: readonly string[];
}

/** The WebSocket subprotocol entry a browser sends its token in: `bearer.<token>`. */
export const WS_BEARER_PREFIX = 'bearer.';
const REALM = 'Bearer realm="adagg"';
const BEARER = /^Bearer[ \t]+([^\s]+)[ \t]*$/i;

const plugin: FastifyPluginAsync<AuthPluginOptions> = async (app: FastifyInstance, opts) => {
  if (opts.mode === 'on' && opts.tokens === undefined) throw new Error('adaggAuth: mode "on" needs tokens');
  const origins = new OriginPolicy(opts.allowedOrigins);
  // Every route registered after this plugin documents the refusals below in /openapi.json.
  app.addHook('onRoute', documentAuth);
  // First: a page elsewhere is refused before CORS or a route sees it, with or without auth.
  app.addHook('onRequest', async (req) => {
    const origin = req.headers.origin;
    if (!origins.allows(origin, req.headers.host)) {
      throw new AdaggError(ErrorCode.OriginNotAllowed, `origin ${JSON.stringify(origin).slice(0, 200)} is not allowed (ADAGG_ALLOWED_ORIGINS)`);
    }
  });
  // Then CORS for the listed origins only (same-origin calls need none). It answers preflights in
  // its own hook, before authentication: a browser sends no credentials on a preflight.
  await app.register(cors, {
    origin: (origin, cb) => {
      const o = origin === undefined ? undefined : normalizeOrigin(origin);
      cb(null, o !== undefined && origins.listed.has(o));
    },
    methods: ['GET', 'HEAD', 'POST', 'DELETE'],
    allowedHeaders: ['authorization', 'content-type', 'content-encoding'],
    exposedHeaders: ['www-authenticate'],
    credentials: false,
    maxAge: 600,
  });
  const tokens = opts.tokens;
  if (opts.mode === 'on' && tokens !== undefined) {
    app.addHook('onRequest', async (req, reply) => authorize(req, reply, tokens));
  }
  // A refused WebSocket upgrade got an HTTP answer on a socket Node no longer manages: close it,
  // or every refused client would hold a connection (and the gateway's close would wait on it).
  // An accepted upgrade is hijacked and never reaches onResponse.
  app.addHook('onResponse', async (req) => {
    if (req.headers.upgrade?.toLowerCase() === 'websocket') req.raw.socket.destroy();
  });
};

/** Authenticates and checks the route's scope; throws 401 / 403 as `{code, error}`. */
function authorize(req: FastifyRequest, reply: FastifyReply, tokens: Authenticator): void {
  const url = req.routeOptions.url;
  const need = url === undefined ? undefined : requiredScope(req.method, url);
  if (need === PUBLIC) return;
  const token = bearerOf(req);
  if (token === undefined || token === '') {
    void reply.header('www-authenticate', REALM);
    const why = token === undefined ? 'missing bearer token' : 'the Authorization header is not a bearer token';
    throw new AdaggError(ErrorCode.Unauthenticated, `${why}: send Authorization: Bearer <token>`);
  }
  const who = tokens.authenticate(token);
  if (who === undefined) {
    void reply.header('www-authenticate', `${REALM}, error="invalid_token"`);
    throw new AdaggError(ErrorCode.Unauthenticated, 'unknown bearer token');
  }
  setPrincipal(req, who);
  // No route matched (a 404 follows): any valid token may learn that.
  if (need === undefined || who.scopes.has(need)) return;
  void reply.header('www-authenticate', `${REALM}, error="insufficient_scope", scope="${need}"`);
  throw new AdaggError(ErrorCode.Forbidden, `token "${who.name}" lacks scope "${need}" (needed by ${req.method} ${url})`);
}

/**
 * The bearer token of a request ('' for an `Authorization` header of another scheme): the
 * `Authorization` header, or on a WebSocket upgrade a
 * `bearer.<token>` entry of `Sec-WebSocket-Protocol` (browsers cannot set headers on a WebSocket).
 * That entry is removed from the request, so the upgrade never echoes the token back as the
 * chosen subprotocol.
 */
function bearerOf(req: FastifyRequest): string | undefined {
  const fromProtocol = takeProtocolToken(req);
  const auth = req.headers.authorization;
  if (auth !== undefined) return BEARER.exec(auth)?.[1] ?? '';
  return fromProtocol;
}

function takeProtocolToken(req: FastifyRequest): string | undefined {
  const raw = req.raw.headers['sec-websocket-protocol'];
  if (typeof raw !== 'string' || req.headers.upgrade?.toLowerCase() !== 'websocket') return undefined;
  const entries = raw.split(',').map((s) => s.trim()).filter(Boolean);
  const entry = entries.find((e) => e.startsWith(WS_BEARER_PREFIX));
  if (entry === undefined) return undefined;
  const rest = entries.filter((e) => !e.startsWith(WS_BEARER_PREFIX));
  if (rest.length > 0) req.raw.headers['sec-websocket-protocol'] = rest.join(', ');
  else delete req.raw.headers['sec-websocket-protocol'];
  return entry.slice(WS_BEARER_PREFIX.length);
}

/**
 * Authentication, authorization and the origin policy as one fastify plugin (not encapsulated):
 * register it before every route. Each request, the WebSocket upgrade included, passes:
 * 1. the `Origin` check (absent, same-origin, or in `allowedOrigins`; else 403
 *    ADAGG_E_ORIGIN_NOT_ALLOWED), with authentication on or off;
 * 2. CORS (@fastify/cors) for the listed origins, answering preflights;
 * 3. with `mode: 'on'`, the bearer token (401 ADAGG_E_UNAUTHENTICATED with `WWW-Authenticate`)
 *    and the route's scope from route-scopes.ts (403 ADAGG_E_FORBIDDEN); the caller is then
 *    `principalOf(req)`.
 *
 * @example
 * await app.register(adaggAuth, { mode: 'on', tokens: await TokenStore.open(file), allowedOrigins: [] });
 */
export const adaggAuth: FastifyPluginAsync<AuthPluginOptions> = Object.assign(plugin, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'adagg-auth',
});
