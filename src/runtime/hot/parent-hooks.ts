import type { BatchResult } from '../../model/apply-results.ts';
import { encodeBatch } from '../../model/batch-codec.ts';
import type { Click } from '../../model/click.ts';
import { adKey, childUnit, decodeControl, encodeControl } from '../../model/hot-messages.ts';
import type { SplitView } from '../../model/hot-report.ts';
import type { ShardBehaviour } from '../shard-behaviour.ts';
import type { ShardHostHotHooks } from '../shard-host.ts';
import { errMeta } from '../supervisor.ts';
import { HotDetector } from './hot-detector.ts';
import { publishOnce, type HotRuntime } from './hot-runtime.ts';

const EVALUATE_EVERY_MS = 1000;

/**
 * The parent side of hot-ad splitting around a shard's incarnation loop:
 * - republishes split ads' clicks that still reach the shard to their child subject, with ids
 *   `fwd-<shard>-<seq>-<gen>-<k>` (a replay publishes the same ids: JetStream drops them in its
 *   window, the child's click_id dedupe after it), awaited before anything later is committed;
 * - once the actor applied a split: adds the child units to placement, then the KV route (the
 *   publishers switch); after an unsplit: the route goes back to `draining` and each child gets its
 *   `end` marker; once the split is over (every final report in): after `lingerMs`, removes the
 *   route and the units;
 * - runs the hot-ad detector and publishes its split/unsplit decisions into the shard's subject.
 * All of it is redone from the restored state after a restart (every step is idempotent).
 */
export class HotParentHooks implements ShardHostHotHooks {
  /** Split state whose side effects are done, per `ad/gen`. */
  private readonly applied = new Map<string, SplitView['state']>();
  private readonly retiredSeen = new Map<string, number>();
  private readonly detector: HotDetector | undefined;
  private lastEvaluation = 0;

  constructor(
    readonly shard: number,
    private readonly rt: HotRuntime,
  ) {
    this.detector = rt.opts.autoChildren > 0 && rt.placement ? new HotDetector(rt.opts) : undefined;
  }

  async restored(actor: ShardBehaviour): Promise<void> {
    this.applied.clear();
    await this.sync(actor);
  }

  async control(actor: ShardBehaviour, seq: number, data: Uint8Array): Promise<{ commitNow: boolean }> {
    const msg = decodeControl(data);
    const r = await actor.applyControl(seq, msg);
    if (r.skipped) return { commitNow: false };
    if (r.reported) this.detector?.observe(r.reported.ad, r.reported.clicks, this.rt.clock.now());
    if (r.batch) await this.deadLetter(seq, r.batch);
    if ((msg.kind === 'split' || msg.kind === 'unsplit') && !r.changed) {
      this.rt.log.info({ shard: this.shard, ad: msg.ad, kind: msg.kind, seq }, 'hot split message ignored (no change)');
    }
    if (r.changed) await this.sync(actor);
    // A state change is committed at once, so a restart rarely has to redo its side effects.
    return { commitNow: r.changed };
  }

  async afterBatch(actor: ShardBehaviour, seq: number, clicks: readonly Click[], res: BatchResult): Promise<void> {
    this.detector?.observeClicks(clicks, this.rt.clock.now());
    if (!res.forward) return;
    const { js, topo } = this.rt;
    await Promise.all(
      res.forward.map((f) =>
        f.to === 'child'
          ? publishOnce(js, topo.hotSubject(adKey(f.ad), f.gen, f.k), encodeBatch(f.clicks), `fwd-${this.shard}-${seq}-${f.gen}-${f.k}`)
          : Promise.resolve(),
      ),
    );
  }

  async beforeCommit(): Promise<void> {}

  async tick(actor: ShardBehaviour): Promise<boolean> {
    const now = this.rt.clock.now();
    await this.cleanupRetired(actor, now);
    if (this.detector && now - this.lastEvaluation >= EVALUATE_EVERY_MS) {
      this.lastEvaluation = now;
      const split = new Set(actor.splits().map((s) => s.ad));
      for (const d of this.detector.evaluate(now, split)) {
        // Children on the parent's own node would only add work: split only with another node up.
        if (d.action === 'split' && !(await this.severalNodes(now))) continue;
        // Only a state change publishes: the decision enters the stream like an operator's.
        const msg = d.action === 'split' ? encodeControl({ kind: 'split', ad: d.ad, children: this.rt.opts.autoChildren, by: 'auto' }) : encodeControl({ kind: 'unsplit', ad: d.ad, by: 'auto' });
        this.rt.log.info({ shard: this.shard, ad: d.ad, action: d.action, ratePerSec: Math.round(d.ratePerSec), sharePct: Math.round(d.sharePct) }, 'hot ad detected');
        await publishOnce(this.rt.js, this.rt.topo.clickSubject(this.shard), msg, `auto-${this.shard}-${adKey(d.ad)}-${d.action}-${actor.lastSeq}`).catch((err: unknown) =>
          this.rt.log.warn({ shard: this.shard, ad: d.ad, err: errMeta(err) }, 'hot split decision not published'),
        );
      }
    }
    return false;
  }

  private async severalNodes(now: number): Promise<boolean> {
    const nodes = (await this.rt.placement?.nodes(now).catch(() => [])) ?? [];
    return nodes.filter((n) => n.alive && !n.draining).length >= 2;
  }

  /** Brings routes, units and end markers in line with the actor's splits (idempotent). */
  private async sync(actor: ShardBehaviour): Promise<void> {
    const { routes, placement, topo, js } = this.rt;
    for (const rec of actor.splits()) {
      const id = `${rec.ad}/${rec.gen}`;
      if (this.applied.get(id) === rec.state) continue;
      const units = Array.from({ length: rec.children }, (_, k) => ({ unit: childUnit(rec.ad, rec.gen, k), parent: this.shard, ad: rec.ad, gen: rec.gen, k }));
      // Units before the route: children exist in the table before publishers switch to them.
      await placement?.addUnits(units);
      await routes.put({ ad: rec.ad, shard: this.shard, children: rec.children, gen: rec.gen, state: rec.state });
      if (rec.state === 'draining') {
        // Every forward of this split was acknowledged before the unsplit was applied, so each
        // marker follows all of them in its child's subject.
        const end = encodeControl({ kind: 'end', ad: rec.ad, gen: rec.gen });
        await Promise.all(units.map((u) => publishOnce(js, topo.hotSubject(adKey(rec.ad), rec.gen, u.k), end, `end-${this.shard}-${rec.gen}-${u.k}`)));
      }
      this.applied.set(id, rec.state);
      this.rt.log.info({ shard: this.shard, ad: rec.ad, gen: rec.gen, children: rec.children, state: rec.state }, 'hot ad state');
      this.rt.events.emit('hot', { shard: this.shard, ad: rec.ad, gen: rec.gen, children: rec.children, state: rec.state });
    }
  }

  /** Removes routes and units of finished splits once they lingered (stragglers handed back). */
  private async cleanupRetired(actor: ShardBehaviour, now: number): Promise<void> {
    for (const r of actor.retired()) {
      const id = `${r.ad}/${r.gen}`;
      const seen = this.retiredSeen.get(id) ?? now;
      this.retiredSeen.set(id, seen);
      if (now - seen < this.rt.opts.lingerMs) continue;
      await this.rt.routes.remove(r.ad, r.gen);
      await this.rt.placement?.removeUnits(Array.from({ length: r.children }, (_, k) => childUnit(r.ad, r.gen, k)));
      actor.dropRetired(r.ad, r.gen);
      this.retiredSeen.delete(id);
      this.applied.delete(id);
      this.rt.log.info({ shard: this.shard, ad: r.ad, gen: r.gen }, 'hot ad split ended');
      this.rt.events.emit('hot', { shard: this.shard, ad: r.ad, gen: r.gen, children: r.children, state: 'done' });
    }
  }

  private async deadLetter(seq: number, res: BatchResult): Promise<void> {
    if (res.tooOld.length === 0) return;
    await this.rt.deadLetters.publish(
      res.tooOld.map((click, i) => ({
        id: `dlq-${this.shard}-${seq}-h${i}`,
        letter: {
          reason: 'too_old' as const,
          error: 'click is older than the correction horizon behind the shard watermark',
          source: `shard ${this.shard} seq ${seq} (hot ad buffer)`,
          at: this.rt.clock.now(),
          click,
        },
      })),
    );
  }
}
