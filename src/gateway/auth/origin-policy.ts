/**
 * Which browser origins may call the gateway: its own (an `Origin` whose host is the request's
 * `Host`) and those listed in ADAGG_ALLOWED_ORIGINS. A request without `Origin` comes from a
 * non-browser client (curl, `adagg ingest`, a server) and is not an origin question at all.
 * Checked on every request, the WebSocket upgrade included, with authentication on or off: a
 * page elsewhere must not post clicks with a "simple" text/plain request that needs no preflight,
 * nor open the live feed in a visitor's browser.
 */

/** An origin as the browser serialises it: lowercase scheme and host, default port dropped. */
export function normalizeOrigin(origin: string): string | undefined {
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
  return u.origin.toLowerCase();
}

/** The allow-list of ADAGG_ALLOWED_ORIGINS plus same-origin. */
export class OriginPolicy {
  private readonly allowed: ReadonlySet<string>;

  constructor(allowedOrigins: readonly string[]) {
    this.allowed = new Set(allowedOrigins.map((o) => normalizeOrigin(o)).filter((o): o is string => o !== undefined));
  }

  /** The configured origins, normalised (for CORS). */
  get listed(): ReadonlySet<string> {
    return this.allowed;
  }

  /** Whether a request with this `Origin` (undefined: none) and `Host` header may proceed. */
  allows(origin: string | undefined, host: string | undefined): boolean {
    if (origin === undefined) return true;
    const o = normalizeOrigin(origin);
    // `null` (sandboxed frames, file: pages) and anything unparsable: an unknown page.
    if (o === undefined) return false;
    if (this.allowed.has(o)) return true;
    return host !== undefined && sameHost(o, host);
  }
}

/** Same origin: the origin's host and port are the `Host` the browser sent the request to. */
function sameHost(origin: string, host: string): boolean {
  const u = new URL(origin);
  const h = host.toLowerCase();
  // `u.host` omits the default port, which a client may still write in `Host`.
  return h === u.host || (u.port === '' && h === `${u.hostname}:${u.protocol === 'https:' ? 443 : 80}`);
}
