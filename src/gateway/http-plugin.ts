import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import { AdaggError, ErrorCode } from '../errors.ts';
import { decodeContentEncoding } from '../ingest/content-encoding.ts';
import { toHttpError } from './error-status.ts';
import { formatSchemaErrors } from './schema-errors.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The route takes its body as a Buffer (POST /v1/clicks checks UTF-8 line by line); other
     * routes get a string, refused with ADAGG_E_BAD_ENCODING unless it is valid UTF-8.
     */
    adaggBodyBytes?: boolean;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

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

/** What Node's HTTP parser refused, as the status and code the gateway answers with. */
function clientErrorOf(err: NodeJS.ErrnoException): { status: number; reason: string; code: string; error: string } {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return { status: 408, reason: 'Request Timeout', code: ErrorCode.RequestTimeout, error: 'the request did not arrive in time' };
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    return { status: 431, reason: 'Request Header Fields Too Large', code: ErrorCode.HeadersTooLarge, error: 'request line and headers are larger than the server accepts' };
  }
  return { status: 400, reason: 'Bad Request', code: ErrorCode.BadParam, error: 'malformed HTTP request' };
}

/**
 * For fastify's `clientErrorHandler` option: what Node's HTTP parser refuses before fastify sees a
 * request (headers or URL over the size limit: 431, a request that did not arrive in time: 408,
 * broken framing: 400) also gets a `{code, error}` body; the connection is closed after it, as
 * Node does.
 */
export function adaggClientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const e = clientErrorOf(err);
  const body = JSON.stringify({ code: e.code, error: e.error });
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${e.status} ${e.reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
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
  // every content type arrives as bytes, `Content-Encoding` undone (bounded), then as a string
  // (valid UTF-8 only) or, for routes that check encoding per line, as the bytes themselves.
  const maxBodyBytes = opts.maxBodyBytes ?? app.initialConfig.bodyLimit ?? 1024 * 1024;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: maxBodyBytes }, async (req: FastifyRequest, raw: Buffer | string) => {
    const bytes = await decodeContentEncoding(typeof raw === 'string' ? Buffer.from(raw) : raw, req.headers['content-encoding'], maxBodyBytes);
    if (req.routeOptions.config.adaggBodyBytes === true) return bytes;
    try {
      return utf8.decode(bytes);
    } catch {
      throw new AdaggError(ErrorCode.BadEncoding, 'request body is not valid UTF-8');
    }
  });
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
 * content type, up to `maxBodyBytes` after gzip/deflate is undone; other encodings 415; bytes that
 * are not UTF-8 400 ADAGG_E_BAD_ENCODING) or as a Buffer to routes configured with
 * `adaggBodyBytes`, schema errors as ADAGG_E_BAD_PARAM, and every error — a
 * thrown AdaggError, fastify's own (413 body too large, 415, 400), an unknown route (404) — as
 * `{code, error}`. It applies to the instance it is registered on (not encapsulated), so register
 * it before the routes:
 *
 * @example
 * const app = Fastify({ frameworkErrors: adaggFrameworkErrors, clientErrorHandler: adaggClientErrorHandler });
 * await app.register(adaggHttp, { maxBodyBytes: 1 << 20 });
 * queryJobRoutes(app, jobs);
 */
export const adaggHttp: FastifyPluginCallback<AdaggHttpOptions> = Object.assign(plugin, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'adagg-http',
});
