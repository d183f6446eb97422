/** POST /v1/clicks for `adagg ingest`: one NDJSON batch, retried with backoff (safe: same ids). */

export interface PostOptions {
  url: string;
  /** Bearer token (scope `ingest`); none when the gateway runs with ADAGG_AUTH=off. */
  token?: string | undefined;
  /** Attempts before giving up; Infinity retries until `signal` aborts (the follower). */
  maxAttempts: number;
  /** Called before each retry with the last failure, e.g. to log it. */
  onRetry?: (error: string, attempt: number) => void;
  signal?: AbortSignal;
}

/** The gateway's reply to one batch. `duplicates` ⊆ `accepted` (0 from a gateway that does not report it). */
export interface PostReply {
  accepted: number;
  duplicates: number;
  rejected: Array<{ line: number; code: string; error: string }>;
}

/** Thrown when every attempt failed (or `signal` aborted); nothing of the batch is known to be stored. */
export class PostFailed extends Error {
  override readonly name = 'PostFailed';
}

/**
 * Sends one NDJSON body. A 400 with `rejected` (no valid click) is an answer, not a failure; other
 * 4xx fail at once; 5xx and network errors are retried with exponential backoff up to 5 s.
 */
export async function postClicks(o: PostOptions, body: string): Promise<PostReply> {
  let lastErr = '';
  for (let attempt = 1; attempt <= o.maxAttempts; attempt++) {
    if (o.signal?.aborted) break;
    try {
      const headers: Record<string, string> = { 'content-type': 'application/x-ndjson', ...(o.token ? { authorization: `Bearer ${o.token}` } : {}) };
      const res = await fetch(`${o.url}/v1/clicks`, { method: 'POST', headers, body, ...(o.signal ? { signal: o.signal } : {}) });
      const json = (await res.json()) as Partial<PostReply> & { code?: string; error?: string };
      if (res.ok || (res.status === 400 && Array.isArray(json.rejected))) {
        return { accepted: json.accepted ?? 0, duplicates: json.duplicates ?? 0, rejected: json.rejected ?? [] };
      }
      lastErr = `${res.status} ${json.code ?? ''} ${json.error ?? ''}`;
      if (res.status < 500) break;
    } catch (err) {
      lastErr = (err as Error).message;
    }
    if (attempt >= o.maxAttempts || o.signal?.aborted) break;
    o.onRetry?.(lastErr, attempt);
    // Safe to resend: the same clicks give the same batch ids and click_ids.
    await sleep(Math.min(5000, 200 * 2 ** Math.min(attempt, 10)), o.signal);
  }
  throw new PostFailed(`POST ${o.url}/v1/clicks failed: ${lastErr}`);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
