import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { ErrorCode } from '../../errors.ts';
import { errorResponses } from '../openapi.ts';

/** The dashboard's files (plain browser ES modules, no build step), next to this folder. */
const STATIC_DIR = path.join(import.meta.dirname, '..', 'static');

/**
 * The only files served, by name: anything else under /static/ is a 404, so no request path ever
 * reaches the file system (no traversal, no dotfiles, no directory listings).
 */
const FILES: ReadonlyMap<string, string> = new Map([
  ['index.html', 'text/html; charset=utf-8'],
  ['app.js', 'text/javascript; charset=utf-8'],
  ['chart.js', 'text/javascript; charset=utf-8'],
  ['invalid-share.js', 'text/javascript; charset=utf-8'],
  ['style.css', 'text/css; charset=utf-8'],
]);

/** Same-origin only: the page's scripts, styles, REST and WebSocket calls all go to this gateway. */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Serves the live dashboard: `/` (index.html) and `/static/<file>` for the files in {@link FILES}. */
export function dashboardRoutes(app: FastifyInstance): void {
  const send = async (reply: FastifyReply, name: string): Promise<FastifyReply> => {
    const type = FILES.get(name);
    if (type === undefined) {
      return reply.code(404).send({ code: ErrorCode.NotFound, error: `no static file ${JSON.stringify(name).slice(0, 80)}` });
    }
    // Read on every request (files are tiny): an edited file shows on reload, nothing goes stale.
    const body = await readFile(path.join(STATIC_DIR, name));
    return reply
      .header('content-type', type)
      .header('cache-control', 'no-store')
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('content-security-policy', CSP)
      .send(body);
  };

  const page = { 200: { description: 'the file', type: 'string' } };
  app.get('/', { schema: { summary: 'The live dashboard page', tags: ['dashboard'], produces: ['text/html'], response: page } }, async (_req, reply) => send(reply, 'index.html'));
  app.get<{ Params: { file: string } }>(
    '/static/:file',
    {
      schema: {
        summary: "The dashboard's files",
        tags: ['dashboard'],
        params: { type: 'object', required: ['file'], properties: { file: { type: 'string', description: [...FILES.keys()].join(', ') } } },
        response: { ...page, ...errorResponses([ErrorCode.NotFound]) },
      },
    },
    async (req, reply) => send(reply, req.params.file),
  );
}
