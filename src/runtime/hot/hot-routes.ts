import { Kvm, type KV, type KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection, QueuedIterator } from '@nats-io/transport-node';
import { adKey, childOf } from '../../model/hot-messages.ts';
import type { Topology } from '../topology.ts';
import { retryTransientJs, STREAM_SETUP_RETRY_MS } from '../streams.ts';

/** A split ad as publishers see it (the KV entry under the ad's key). */
export interface HotRoute {
  ad: string;
  shard: number;
  children: number;
  gen: number;
  /** `split`: publish to the children; `draining`: back to the shard (the children finish). */
  state: 'split' | 'draining';
}

/**
 * The hot-ad routes in a JetStream KV bucket (`<PREFIX>_HOT`, key = hex of the ad_id). A parent
 * shard writes its split ads there after it applied the split; publishers (the gateway's producer,
 * the producer API) watch the bucket and send a split ad's clicks straight to child
 * `childOf(click_id, children)`. A publisher that has not seen an update yet is still correct: the
 * parent forwards what reaches it, or buffers it while draining.
 *
 * @example
 * const routes = await HotRoutes.open(nc, topology('adagg'));
 * await routes.watch();
 * const producer = new ClickProducer(nc, topology('adagg'), { shards: 16, hotRoutes: routes });
 */
export class HotRoutes {
  private readonly routes = new Map<string, HotRoute & { revision: number }>();
  private watcher: QueuedIterator<KvWatchEntry> | undefined;
  private loop: Promise<void> | undefined;

  private constructor(
    private readonly kv: KV,
    private readonly topo: Topology,
  ) {}

  /**
   * Opens the bucket, creating it if missing (KV works on nats-server 2.9). Transient JetStream
   * failures are retried for `retryMs`: nodes starting at once race to create the replicated bucket,
   * and one of them once died of a timed-out request at start.
   */
  static async open(nc: NatsConnection, topo: Topology, replicas = 1, retryMs = STREAM_SETUP_RETRY_MS): Promise<HotRoutes> {
    const kv = await retryTransientJs(() => new Kvm(nc).create(topo.hotBucket, { history: 1, replicas }), retryMs);
    return new HotRoutes(kv, topo);
  }

  /** Follows the bucket from now on; resolves once the current entries are loaded. */
  async watch(): Promise<this> {
    if (this.watcher) return this;
    const w = await this.kv.watch({ key: '>' });
    this.watcher = w;
    this.loop = (async () => {
      for await (const e of w) this.apply(e);
    })().catch(() => undefined);
    // The watch delivers current values too, but gives no signal when it has: read them directly.
    const keys = await this.kv.keys();
    const names: string[] = [];
    for await (const k of keys) names.push(k);
    await Promise.all(names.map(async (k) => {
      const e = await this.kv.get(k);
      if (e) this.apply(e);
    }));
    return this;
  }

  private apply(e: { key: string; revision: number; operation: string; value: Uint8Array }): void {
    const cur = this.routes.get(e.key);
    if (cur && cur.revision >= e.revision) return;
    if (e.operation !== 'PUT') {
      this.routes.delete(e.key);
      return;
    }
    try {
      const r = JSON.parse(new TextDecoder().decode(e.value)) as HotRoute;
      this.routes.set(e.key, { ...r, revision: e.revision });
    } catch {
      this.routes.delete(e.key);
    }
  }

  /** The route of an ad whose clicks go to children now, else undefined (publish to its shard). */
  route(adId: string): HotRoute | undefined {
    if (this.routes.size === 0) return undefined;
    const r = this.routes.get(adKey(adId));
    return r && r.state === 'split' ? r : undefined;
  }

  /** The child subject of one click of a split ad. */
  subjectFor(r: HotRoute, clickId: string): string {
    return this.topo.hotSubject(adKey(r.ad), r.gen, childOf(clickId, r.children));
  }

  /** Every known route (split or draining). */
  all(): HotRoute[] {
    return [...this.routes.values()].map(({ revision: _r, ...r }) => r);
  }

  async get(adId: string): Promise<HotRoute | undefined> {
    const e = await this.kv.get(adKey(adId));
    if (!e || e.operation !== 'PUT') return undefined;
    return JSON.parse(new TextDecoder().decode(e.value)) as HotRoute;
  }

  async put(r: HotRoute): Promise<void> {
    const cur = await this.get(r.ad);
    if (cur && cur.gen === r.gen && cur.state === r.state && cur.children === r.children) return;
    await this.kv.put(adKey(r.ad), JSON.stringify(r));
  }

  /** Deletes the ad's entry if it still describes split `gen` (a newer split keeps its entry). */
  async remove(adId: string, gen: number): Promise<void> {
    const cur = await this.get(adId);
    if (cur && cur.gen === gen) await this.kv.delete(adKey(adId));
  }

  close(): void {
    this.watcher?.stop();
    this.watcher = undefined;
  }
}
