import { splitSpreadKey, spreadKey, type SpreadState } from './records.ts';

/**
 * The ad role's spread bits (verdicts received), by rule id, window and key tuple: nested so the
 * cascade looks a group's bit up without building its spread key; persisted by spread key.
 */
export class SpreadStates {
  private readonly byRule = new Map<string, Map<number, Map<string, SpreadState>>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(id: string, window: number, key: string): SpreadState | undefined {
    return this.byRule.get(id)?.get(window)?.get(key);
  }

  /** The bits of one rule window, if any (lets a caller skip building a key). */
  window(id: string, window: number): ReadonlyMap<string, SpreadState> | undefined {
    return this.byRule.get(id)?.get(window);
  }

  set(id: string, window: number, key: string, s: SpreadState): void {
    let windows = this.byRule.get(id);
    if (windows === undefined) this.byRule.set(id, (windows = new Map()));
    let keys = windows.get(window);
    if (keys === undefined) windows.set(window, (keys = new Map()));
    if (!keys.has(key)) this.count++;
    keys.set(key, s);
  }

  /** Restores a bit stored under its spread key; false when the key is malformed. */
  setByKey(k: string, s: SpreadState): boolean {
    const id = splitSpreadKey(k);
    if (id === null) return false;
    this.set(id.id, id.window, id.key, s);
    return true;
  }

  /** Drops the bits whose window ended at or before `cut`, telling `removed` each one's spread key. */
  expire(cut: number, removed: (k: string, s: SpreadState) => void): void {
    for (const [id, windows] of this.byRule) {
      for (const [window, keys] of windows) {
        for (const [key, s] of keys) {
          if (s.end > cut) continue;
          keys.delete(key);
          this.count--;
          removed(spreadKey(id, window, key), s);
        }
        if (keys.size === 0) windows.delete(window);
      }
      if (windows.size === 0) this.byRule.delete(id);
    }
  }

  /** Every bit with its spread key (persistence of a whole state, diagnostics). */
  *entries(): Generator<[string, SpreadState]> {
    for (const [id, windows] of this.byRule) for (const [window, keys] of windows) for (const [key, s] of keys) yield [spreadKey(id, window, key), s];
  }
}
