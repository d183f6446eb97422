/**
 * Waits for an adagg stack to settle, built on {@link waitFor}: shards committed what was
 * published, an ad's minutes final, a query job finished. (Minutes closed in every shard:
 * `waitAllClosed` in verify.ts.)
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import { topology } from '../../src/runtime/topology.ts';
import { getJson } from './stack.ts';
import { waitFor, waitForValue, type WaitOptions } from './wait.ts';

/**
 * Waits until every shard has committed (its Redis meta seq, as `/v1/status` reports it) the last
 * message on its subject at the time of the call: everything published so far is counted.
 */
export async function waitShardsCommitted(
  stack: { url: string; opts: { prefix: string; shards: number } },
  jsm: JetStreamManager,
  opts: WaitOptions = {},
): Promise<void> {
  const topo = topology(stack.opts.prefix);
  const want = await Promise.all(
    [...Array(stack.opts.shards).keys()].map((s) =>
      jsm.streams.getMessage(topo.clicksStream, { last_by_subj: topo.clickSubject(s) }).then(
        (m) => m?.seq ?? 0,
        () => 0,
      ),
    ),
  );
  let last: unknown;
  await waitFor(
    `shards committed through ${want.join(',')}`,
    async () => {
      const { status, body } = await getJson(`${stack.url}/v1/status`);
      last = body;
      if (status !== 200) return false;
      return (body.shards as Array<{ shard: number; committed_seq: number }>).every((s) => s.committed_seq >= want[s.shard]!);
    },
    { everyMs: 100, detail: () => last, ...opts },
  );
}

/**
 * `aggregated_count` of `ad` over [fromMs, toMs) (`query`: extra parameters such as `&country=US`)
 * once every minute in it is final; returns the response body.
 */
export async function finalAdCount(url: string, ad: string, fromMs: number, toMs: number, query = '', opts: WaitOptions = {}): Promise<any> {
  const r = await waitForValue(
    `${ad} minutes final in [${new Date(fromMs).toISOString()}, ${new Date(toMs).toISOString()})${query}`,
    () => getJson(`${url}/v1/ads/${encodeURIComponent(ad)}/aggregated_count?from=${fromMs}&to=${toMs}${query}`),
    (res) => res.status === 200 && (res.body.minutes as Array<{ final: boolean }>).every((m) => m.final),
    opts,
  );
  return r.body;
}

/**
 * Polls query job `id` (`GET /v1/queries/:id` on `url`) until it is done or failed and returns its
 * last view; `onPoll` sees every view on the way (e.g. to record progress). A non-200 answer fails.
 */
export async function settledQueryJob(url: string, id: string, opts: WaitOptions & { onPoll?: (job: any) => void } = {}): Promise<any> {
  const { onPoll, ...wait } = opts;
  return waitForValue(
    `query job ${id} done or failed`,
    async () => {
      const r = await getJson(`${url}/v1/queries/${id}`);
      if (r.status !== 200) throw new Error(`GET /v1/queries/${id}: ${r.status} ${JSON.stringify(r.body)}`);
      onPoll?.(r.body);
      return r.body;
    },
    (job) => job.status === 'done' || job.status === 'failed',
    { timeoutMs: 60_000, everyMs: 100, ...wait },
  );
}
