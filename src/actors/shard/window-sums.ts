import { rankCompare, topN, type Ranked } from '../../model/top-n.ts';

/** The counts of one closed minute for a ranking's filter (ad → count), or undefined. */
export type MinuteView = (minute: number) => ReadonlyMap<string, number> | undefined;

/**
 * Per-ad sums of a ranking over the closed minutes [from, to), with their top-K, kept up to date
 * incrementally: a window moving on by a minute subtracts the minute leaving it and adds the one
 * entering it; a late click adds to one ad's sum and moves that ad within (or into) the top-K.
 * A minute close costs the two minutes' sizes plus one top-K selection; a late click costs O(K).
 * Never the whole window again, which a 60-minute window of a busy shard cannot afford per click.
 */
export class WindowSums {
  readonly sums = new Map<string, number>();
  #top: Ranked[] = [];
  /** False after a change the top-K cannot follow incrementally (a decrease, a slide). */
  #topValid = false;

  private constructor(
    public from: number,
    public to: number,
    readonly depth: number,
  ) {}

  /** The sums of [from, to) from scratch. */
  static build(view: MinuteView, from: number, to: number, depth: number): WindowSums {
    const w = new WindowSums(from, to, depth);
    for (let m = from; m < to; m++) w.#addMinute(view(m), 1);
    return w;
  }

  covers(minute: number): boolean {
    return minute >= this.from && minute < this.to;
  }

  /**
   * Moves the window to [from, to): subtracts the minutes leaving it, adds those entering it.
   * Rebuilds instead when that would touch more minutes than the window holds.
   */
  moveTo(view: MinuteView, from: number, to: number): WindowSums {
    if (from === this.from && to === this.to) return this;
    const leaving = Math.max(0, Math.min(from, this.to) - this.from);
    const entering = Math.max(0, to - Math.max(this.to, from));
    if (from < this.from || to < this.to || leaving + entering >= to - from) return WindowSums.build(view, from, to, this.depth);
    for (let m = this.from; m < Math.min(from, this.to); m++) this.#addMinute(view(m), -1);
    for (let m = Math.max(this.to, from); m < to; m++) this.#addMinute(view(m), 1);
    this.from = from;
    this.to = to;
    this.#topValid = false;
    return this;
  }

  /** One ad's sum changes by `delta` (a late click, a hot child's report). */
  add(ad: string, delta: number): void {
    if (delta === 0) return;
    const sum = (this.sums.get(ad) ?? 0) + delta;
    if (sum > 0) this.sums.set(ad, sum);
    else this.sums.delete(ad);
    if (!this.#topValid) return;
    if (delta < 0) {
      this.#topValid = false;
      return;
    }
    // Sums only grew: the ad keeps or improves its place, and can only push out the last one.
    const top = this.#top;
    let i = top.findIndex((r) => r.ad_id === ad);
    if (i >= 0) top[i] = { ad_id: ad, count: sum };
    else if (top.length < this.depth) i = top.push({ ad_id: ad, count: sum }) - 1;
    else if (rankCompare({ ad_id: ad, count: sum }, top[top.length - 1]!) < 0) top[(i = top.length - 1)] = { ad_id: ad, count: sum };
    else return;
    for (; i > 0 && rankCompare(top[i]!, top[i - 1]!) < 0; i--) [top[i], top[i - 1]] = [top[i - 1]!, top[i]!];
  }

  /** The top-K (count descending, then ad ascending). */
  top(): Ranked[] {
    if (!this.#topValid) {
      this.#top = topN(this.sums, this.depth);
      this.#topValid = true;
    }
    return this.#top;
  }

  #addMinute(view: ReadonlyMap<string, number> | undefined, sign: 1 | -1): void {
    if (!view) return;
    const sums = this.sums;
    for (const [ad, n] of view) {
      const s = (sums.get(ad) ?? 0) + sign * n;
      if (s > 0) sums.set(ad, s);
      else sums.delete(ad);
    }
    this.#topValid = false;
  }
}
