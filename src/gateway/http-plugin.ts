import type { FastifyError, FastifyInstance, FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import { ErrorCode } from '../errors.ts';
import { toHttpError } from './error-status.ts';
import { formatSchemaErrors } from './schema-errors.ts';

export interface AdaggHttpOptions {
  /** Largest request body in bytes (larger → 413 ADAGG_E_BODY_TOO_LARGE). @default the instance's bodyLimit */
  maxBodyBytes?: number | undefined;
}

/** Sends any error as `{code, error}` with the status its code maps to; 5xx are logged. */
export function sendHttpError(err: unknown, req: FastifyRequest, reply: FastifyReply): void {
  const e = toHttpError(err);
  if (e.status >= 500) req.log.error({ err, url: req.url }, 'request failed');
  void reply.code(e.status).send({ code: e.code, error: e.error });
}

/**
 * For fastify's `frameworkErrors` option: errors raised before routing (a URL the router cannot
 * decode, a path parameter over the length limit) also answer `{code, error}`. It is a server
 * option, so it cannot come with the plugin: pass it to `Fastify({frameworkErrors})`.
 */
export function adaggFrameworkErrors(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  sendHttpError(err, req, reply);
}

const plugin: FastifyPluginCallback<AdaggHttpOptions> = (app: FastifyInstance, opts, done) => {
  // Bodies are parsed by adagg itself (NDJSON and JSON alike) so each bad line gets its own error:
  // every content type arrives as a string, and routes decide what they accept.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string', ...(opts.maxBodyBytes === undefined ? {} : { bodyLimit: opts.maxBodyBytes }) }, (_req, body, next) =>
    next(null, body),
  );
  // Route schemas validate; their errors read like the gateway's own (ADAGG_E_BAD_PARAM naming the parameter).
  app.setSchemaErrorFormatter(formatSchemaErrors);
  // Response schemas document the API (OpenAPI); replies are serialised as they are, never filtered.
  app.setSerializerCompiler(() => (data: unknown) => JSON.stringify(data));
  app.setErrorHandler((err, req, reply) => sendHttpError(err, req, reply));
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ code: ErrorCode.NotFound, error: `no route ${req.method} ${req.url.split('?')[0]}` });
  });
  done();
};

/**
 * The gateway's HTTP conventions as a fastify plugin: bodies handed to routes as strings (any
 * content type, up to `maxBodyBytes`), schema errors as ADAGG_E_BAD_PARAM, and every error — a
 * thrown AdaggError, fastify's own (413 body too large, 415, 400), an unknown route (404) — as
 * `{code, error}`. It applies to the instance it is registered on (not encapsulated), so register
 * it before the routes:
 *
 * @example
 * const app = Fastify({ frameworkErrors: adaggFrameworkErrors });
 * await app.register(adaggHttp, { maxBodyBytes: 1 << 20 });
 * queryJobRoutes(app, jobs);
 */
export const adaggHttp: FastifyPluginCallback<AdaggHttpOptions> = Object.assign(plugin, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'adagg-http',
});
