import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { AdaggError, ErrorCode } from '../errors.ts';

const gunzip = promisify(zlib.gunzip);
const inflate = promisify(zlib.inflate);
const inflateRaw = promisify(zlib.inflateRaw);

/** The `Content-Encoding` values a request body may carry. */
export const SUPPORTED_ENCODINGS = ['gzip', 'x-gzip', 'deflate', 'identity'] as const;

/** Inflates one layer; the output bound is zlib's own (`maxOutputLength`), so a bomb stops there. */
async function decodeOne(encoding: string, body: Buffer, maxBytes: number): Promise<Buffer> {
  const o = { maxOutputLength: maxBytes };
  try {
    if (encoding === 'gzip' || encoding === 'x-gzip') return await gunzip(body, o);
    // RFC 9110 `deflate` is zlib-wrapped, but some clients send raw deflate: try both.
    return await inflate(body, o).catch((err: unknown) => ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' ? Promise.reject(err) : inflateRaw(body, o)));
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new AdaggError(ErrorCode.BodyTooLarge, `request body inflates past ${maxBytes} bytes (ADAGG_MAX_BODY_BYTES)`);
    }
    throw new AdaggError(ErrorCode.BadEncoding, `request body is not valid ${encoding} data`, { cause: err });
  }
}

/**
 * Undoes a request's `Content-Encoding` (gzip or deflate, several layers applied in order), each
 * layer bounded to `maxBytes` of output: ADAGG_MAX_BODY_BYTES applies after inflation, and a zip
 * bomb gets ADAGG_E_BODY_TOO_LARGE (413) once the bound is reached, not the memory it asks for.
 * Any other encoding is ADAGG_E_UNSUPPORTED_MEDIA_TYPE (415).
 */
export async function decodeContentEncoding(body: Buffer, header: string | string[] | undefined, maxBytes: number): Promise<Buffer> {
  const value = Array.isArray(header) ? header.join(',') : (header ?? '');
  const layers = value
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '' && s !== 'identity');
  if (layers.length === 0) return body;
  const unsupported = layers.find((l) => !(SUPPORTED_ENCODINGS as readonly string[]).includes(l));
  if (unsupported !== undefined) {
    throw new AdaggError(ErrorCode.UnsupportedMediaType, `content-encoding ${unsupported.slice(0, 32)} is not supported; use gzip or deflate`);
  }
  if (layers.length > 2) throw new AdaggError(ErrorCode.UnsupportedMediaType, 'more than two content-encoding layers');
  let out = body;
  // Encodings are listed in the order they were applied: undo the last first.
  for (const l of layers.reverse()) out = await decodeOne(l, out, maxBytes);
  return out;
}
