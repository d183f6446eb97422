/** `adagg split AD_ID --children K [--wait]`, `adagg unsplit AD_ID [--wait]`: force hot-ad splitting. */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { AdaggError, ErrorCode } from '../../errors.ts';
import { encodeControl, MAX_CHILDREN, type HotControl } from '../../model/hot-messages.ts';
import { shardOf } from '../../model/partition.ts';
import { AD_ID_RE, AD_ID_SYNTAX } from '../../model/validate.ts';
import { compileOptions, optionsFromEnv } from '../../options.ts';
import type { HotSplitStatus } from '../../runtime/query-protocol.ts';
import { connectNats } from '../../runtime/nats.ts';
import { ShardClient } from '../../runtime/shard-client.ts';
import { topology, type Topology } from '../../runtime/topology.ts';
import { positionals, timeoutMs, UsageError, waitUntil } from './context.ts';

export interface SplitResult {
  ad: string;
  shard: number;
  /** What the command did: published the message, or nothing because the ad already was in that state. */
  action: 'published' | 'already';
  /** The shard's view (with --wait, or when nothing was published): null when the ad is not split. */
  split: HotSplitStatus | null;
  /** With --wait: how long until the shard applied it (split) or the children were done (unsplit). */
  ms?: number;
}

interface SplitContext {
  nc: NatsConnection;
  topo: Topology;
  shards: number;
  client: ShardClient;
}

/** NATS (NATS_URL) and the shard count the clicks stream was created with. */
async function openSplitContext(): Promise<SplitContext> {
  const o = compileOptions(optionsFromEnv());
  if (!o.natsUrl) throw new AdaggError(ErrorCode.BadOption, 'NATS_URL must be set (the NATS the runtime nodes use)');
  const nc = await connectNats({ ...o, natsUrl: o.natsUrl }, 'adagg-cli');
  const topo = topology(o.prefix);
  const info = await (await jetstreamManager(nc)).streams.info(topo.clicksStream).catch(() => null);
  if (!info) {
    await nc.close();
    throw new AdaggError(ErrorCode.BadParam, `no stream ${topo.clicksStream}: is ADAGG_PREFIX right and has a node run?`);
  }
  const m = /shards=(\d+)/.exec(info.config.description ?? '');
  return { nc, topo, shards: m ? Number(m[1]) : o.shards, client: new ShardClient(nc, topo, o.queryTimeoutMs, 4) };
}

async function splitState(ctx: SplitContext, shard: number, ad: string): Promise<HotSplitStatus | null> {
  const all = await ctx.client.ask<HotSplitStatus[]>(shard, { op: 'hot-status' });
  return all.find((s) => s.ad === ad) ?? null;
}

/**
 * Publishes a split (or unsplit) control message into the ad's shard subject: the shard applies it
 * at that stream position (see docs/hot-ads.md). Nothing is published if the ad already is in
 * the asked state; with `wait` it returns once the shard applied it (unsplit: once the children
 * sent their final reports).
 */
export async function requestSplit(ad: string, children: number | null, wait: number | null): Promise<SplitResult> {
  if (!AD_ID_RE.test(ad)) throw new UsageError(`AD_ID must match ${AD_ID_SYNTAX}, got '${ad}'`);
  const ctx = await openSplitContext();
  try {
    const shard = shardOf(ad, ctx.shards);
    const before = await splitState(ctx, shard, ad);
    const want = children === null ? 'unsplit' : 'split';
    if ((want === 'split' && before) || (want === 'unsplit' && (!before || before.state === 'draining'))) {
      return { ad, shard, action: 'already', split: before };
    }
    const msg: HotControl = children === null ? { kind: 'unsplit', ad, by: 'operator' } : { kind: 'split', ad, children, by: 'operator' };
    const t0 = Date.now();
    await jetstream(ctx.nc).publish(ctx.topo.clickSubject(shard), encodeControl(msg), { msgID: `op-${want}-${randomUUID()}` });
    if (wait === null) return { ad, shard, action: 'published', split: before };
    const split = await waitUntil(
      async () => {
        const s = await splitState(ctx, shard, ad);
        if (want === 'split') return s ? { s } : undefined;
        return s ? undefined : { s: null };
      },
      wait,
      async () => `shard ${shard} has not ${want === 'split' ? 'applied the split' : 'finished the un-split'} (${JSON.stringify(await splitState(ctx, shard, ad).catch(() => 'unknown'))})`,
      100,
    );
    return { ad, shard, action: 'published', split: split.s, ms: Date.now() - t0 };
  } finally {
    await ctx.nc.close();
  }
}

function render(r: SplitResult, want: 'split' | 'unsplit'): string {
  const s = r.split;
  const state = s ? `${s.state} into ${s.children} children (gen ${s.gen})` : 'not split';
  if (r.action === 'already') return `ad ${r.ad} (shard ${r.shard}) is already ${want === 'split' ? state : s ? 'un-splitting' : 'not split'}; nothing sent`;
  const took = r.ms === undefined ? '' : ` in ${(r.ms / 1000).toFixed(1)}s`;
  if (want === 'split') return r.ms === undefined ? `split of ad ${r.ad} sent to shard ${r.shard}` : `ad ${r.ad} (shard ${r.shard}) is ${state}${took}`;
  return r.ms === undefined ? `un-split of ad ${r.ad} sent to shard ${r.shard}` : `ad ${r.ad} (shard ${r.shard}) is counted by its shard again${took}`;
}

export async function splitCommand(args: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({
    args,
    allowPositionals: true,
    options: { children: { type: 'string' }, wait: { type: 'boolean' }, timeout: { type: 'string' }, json: { type: 'boolean' } },
  });
  const [ad] = positionals(rest, ['AD_ID']);
  if (values.children === undefined) throw new UsageError('--children K is required');
  const k = /^\d+$/.test(values.children) ? Number(values.children) : NaN;
  if (!(k >= 1 && k <= MAX_CHILDREN)) throw new UsageError(`--children must be an integer in 1..${MAX_CHILDREN}, got '${values.children}'`);
  const r = await requestSplit(ad!, k, values.wait ? timeoutMs(values.timeout, 30) : null);
  console.log(values.json ? JSON.stringify(r) : render(r, 'split'));
  return 0;
}

export async function unsplitCommand(args: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({
    args,
    allowPositionals: true,
    options: { wait: { type: 'boolean' }, timeout: { type: 'string' }, json: { type: 'boolean' } },
  });
  const [ad] = positionals(rest, ['AD_ID']);
  const r = await requestSplit(ad!, null, values.wait ? timeoutMs(values.timeout, 60) : null);
  console.log(values.json ? JSON.stringify(r) : render(r, 'unsplit'));
  return 0;
}
