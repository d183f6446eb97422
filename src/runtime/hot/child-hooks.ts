import { AdaggError, ErrorCode } from '../../errors.ts';
import type { BatchResult } from '../../model/apply-results.ts';
import { encodeBatch } from '../../model/batch-codec.ts';
import { decodeControl, encodeControl, IDS_PER_PART } from '../../model/hot-messages.ts';
import { idChunks, reportRows, type HotSeenReply } from '../../model/hot-report.ts';
import type { ShardCommit } from '../../model/shard-state.ts';
import type { UnitEntry } from '../placement/types.ts';
import type { ShardReply, ShardRequest } from '../query-protocol.ts';
import type { ShardActorPorts, ShardBehaviour } from '../shard-behaviour.ts';
import type { ShardHostHotHooks } from '../shard-host.ts';
import { publishOnce, type HotRuntime } from './hot-runtime.ts';

/**
 * The child side of hot-ad splitting. A child is a shard actor on its own subject with three
 * additions:
 * - before counting an id it has not seen, it asks its parent whether the parent counted it before
 *   the split (`hot-seen` on the parent's query subject; retried until the parent has applied the
 *   split);
 * - before each commit it publishes a report of the state being committed into the parent's
 *   subject: absolute counts of the minutes the commit closes or corrects and of its open minutes,
 *   and its closedThrough, id `rep-<unit>-<seq>-<closedThrough>`. Absolute values make a replayed
 *   or repeated report harmless; publishing before the commit means no committed state is ever
 *   unreported (a failed commit is replayed and reported again);
 * - after its `end` marker: one final report (every minute closed, plus its dedupe ids in parts of
 *   at most 64 Ki ids) and from then on every click is handed back to the parent.
 */
export class HotChildHooks implements ShardHostHotHooks {
  private finalSent = false;
  private reportedClosed = -1;
  private closed = false;
  /** The parent's highest event time counted before the split, once known: later clicks need no question. */
  private parentMaxTs: number | undefined;
  private readonly parentSubject: string;

  constructor(
    readonly unit: Pick<UnitEntry, 'unit' | 'parent' | 'ad' | 'gen' | 'k'>,
    private readonly rt: HotRuntime,
    private readonly askTimeoutMs = 2000,
  ) {
    this.parentSubject = rt.topo.clickSubject(unit.parent);
  }

  /** Stops waiting for the parent (the unit is being stopped). */
  close(): void {
    this.closed = true;
  }

  ports(): Partial<ShardActorPorts> {
    return { seenByParent: (hashes, ts) => this.seenByParent(hashes, ts) };
  }

  /** Asks only about clicks not later than anything the parent had counted before the split. */
  private async seenByParent(hashes: readonly number[], ts: readonly number[]): Promise<boolean[]> {
    const out: boolean[] = new Array(ts.length).fill(false);
    if (this.parentMaxTs === undefined) this.parentMaxTs = (await this.askParent([])).maxTs;
    const maxTs = this.parentMaxTs;
    const idx: number[] = [];
    const ask: number[] = [];
    for (let i = 0; i < ts.length; i++) {
      if (ts[i]! > maxTs) continue;
      idx.push(i);
      ask.push(hashes[2 * i]!, hashes[2 * i + 1]!);
    }
    if (idx.length === 0) return out;
    const { seen } = await this.askParent(ask);
    idx.forEach((i, j) => (out[i] = seen[j] === true));
    return out;
  }

  private async askParent(hashes: number[]): Promise<HotSeenReply> {
    const req = JSON.stringify({ op: 'hot-seen', ad: this.unit.ad, gen: this.unit.gen, hashes } satisfies ShardRequest);
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw new AdaggError(ErrorCode.ShardUnavailable, `hot child ${this.unit.unit} stopped while asking its parent`);
      try {
        const msg = await this.rt.nc.request(this.rt.topo.querySubject(this.unit.parent), req, { timeout: this.askTimeoutMs });
        const reply = JSON.parse(msg.string()) as ShardReply<HotSeenReply | null>;
        if (reply.ok && reply.result) return reply.result;
      } catch {
        // no parent owner right now (restarting, moving): ask again
      }
      await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** Math.min(attempt, 5))));
    }
  }

  async restored(actor: ShardBehaviour): Promise<void> {
    // A committed end was reported before that commit; a committed state was reported likewise.
    this.finalSent = actor.childEnded;
    this.reportedClosed = actor.closedThrough;
  }

  async control(actor: ShardBehaviour, seq: number, data: Uint8Array): Promise<{ commitNow: boolean }> {
    const r = await actor.applyControl(seq, decodeControl(data));
    return { commitNow: r.changed };
  }

  async afterBatch(_actor: ShardBehaviour, seq: number, _clicks: unknown, res: BatchResult): Promise<void> {
    const back = res.forward?.find((f) => f.to === 'parent');
    if (back) await publishOnce(this.rt.js, this.parentSubject, encodeBatch(back.clicks), `back-${this.unit.unit}-${seq}`);
    // Too-old clicks are dead-lettered by the incarnation, as for every unit.
  }

  async beforeCommit(actor: ShardBehaviour, c: ShardCommit): Promise<void> {
    if (this.finalSent) return;
    const { ad, gen, k } = this.unit;
    const rows = reportRows(ad, [...c.writes, ...actor.openWrites()]);
    if (!actor.childEnded) {
      const msg = encodeControl({ kind: 'report', ad, gen, k, closedThrough: c.closedThrough, final: false, part: 0, parts: 1, rows });
      await publishOnce(this.rt.js, this.parentSubject, msg, `rep-${this.unit.unit}-${c.seq}-${c.closedThrough}`);
      this.reportedClosed = Math.max(this.reportedClosed, c.closedThrough);
      return;
    }
    const chunks = idChunks(actor.dedupBytes(), IDS_PER_PART);
    for (let i = 0; i < chunks.length; i++) {
      const msg = encodeControl({ kind: 'report', ad, gen, k, closedThrough: c.closedThrough, final: true, part: i, parts: chunks.length, rows: i === 0 ? rows : [], ids: chunks[i] });
      await publishOnce(this.rt.js, this.parentSubject, msg, `rep-${this.unit.unit}-${c.seq}-f${i}`);
    }
    this.finalSent = true;
    this.rt.log.info({ unit: this.unit.unit, ad, gen, k, parts: chunks.length }, 'hot child sent its final report');
  }

  async tick(actor: ShardBehaviour, pending: number): Promise<boolean> {
    this.rt.events.emit('hotChild', { unit: this.unit.unit, ad: this.unit.ad, k: this.unit.k, lag: pending, closedThrough: actor.closedThrough });
    // Minutes closed with nothing to write still have to reach the parent (its closing waits on them).
    return !this.finalSent && actor.closedThrough > this.reportedClosed;
  }
}
