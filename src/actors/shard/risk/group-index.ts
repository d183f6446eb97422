import { CUBE_SEPARATOR, type Click } from '../../../model/click.ts';
import { clickField } from '../../../model/risk-rules.ts';
import { RuleGroup, type ClickRec } from './records.ts';

/** A group in its rule's index: a click record while it has one member, then a RuleGroup. */
export type Entry = ClickRec | RuleGroup;

/** Per key-tuple head (the first field's value): the one group with that head, or the groups by the rest of the tuple. */
type Slot = Entry | Map<string, Entry>;

/**
 * The groups of one stateful rule by window and key tuple, without building the tuple's string for
 * each click: a tuple is looked up by its first field's value, then (for a multi-field key) by the
 * rest, and a head with a single group holds it directly (checked against its first click).
 * Tuples are only joined (CUBE_SEPARATOR, as keyValue) when a group's key is reported.
 */
export class GroupIndex {
  private readonly windows = new Map<number, Map<string, Slot>>();

  constructor(private readonly key: readonly string[]) {}

  /** The group of a click subject to the rule (every key field present). */
  get(window: number, c: Click, head: string): Entry | undefined {
    const slot = this.windows.get(window)?.get(head);
    if (slot === undefined || this.key.length === 1) return slot as Entry | undefined;
    const rest = this.rest(c);
    if (slot instanceof Map) return slot.get(rest);
    return this.rest(first(slot)) === rest ? slot : undefined;
  }

  /** The group of a click subject to the rule; when there is none, `rec` becomes it (and undefined is returned). */
  claim(window: number, c: Click, head: string, rec: ClickRec): Entry | undefined {
    let heads = this.windows.get(window);
    if (heads === undefined) this.windows.set(window, (heads = new Map()));
    const slot = heads.get(head);
    if (slot === undefined) {
      heads.set(head, rec);
      return undefined;
    }
    if (this.key.length === 1) return slot as Entry;
    const rest = this.rest(c);
    if (slot instanceof Map) {
      const e = slot.get(rest);
      if (e === undefined) slot.set(rest, rec);
      return e;
    }
    const other = this.rest(first(slot));
    if (other === rest) return slot;
    heads.set(head, new Map([[other, slot], [rest, rec]]));
    return undefined;
  }

  /** The group of a key tuple string, if held. */
  find(window: number, key: string): Entry | undefined {
    if (this.key.length === 1) return this.windows.get(window)?.get(key) as Entry | undefined;
    const at = key.indexOf(CUBE_SEPARATOR);
    if (at < 0) return undefined;
    const slot = this.windows.get(window)?.get(key.slice(0, at));
    if (slot === undefined) return undefined;
    const rest = key.slice(at + 1);
    if (slot instanceof Map) return slot.get(rest);
    return this.rest(first(slot)) === rest ? slot : undefined;
  }

  /** Puts a group in place of what the click's tuple held (nothing, or its single-click group). */
  set(window: number, c: Click, head: string, e: Entry): void {
    let heads = this.windows.get(window);
    if (heads === undefined) this.windows.set(window, (heads = new Map()));
    if (this.key.length === 1) {
      heads.set(head, e);
      return;
    }
    const slot = heads.get(head);
    const rest = this.rest(c);
    if (slot === undefined) heads.set(head, e);
    else if (slot instanceof Map) slot.set(rest, e);
    else {
      const other = this.rest(first(slot));
      if (other === rest) heads.set(head, e);
      else heads.set(head, new Map([[other, slot], [rest, e]]));
    }
  }

  /** Every group with its window and key tuple string. */
  *entries(): Generator<[number, string, Entry]> {
    for (const [window, heads] of this.windows) {
      for (const [head, slot] of heads) {
        if (!(slot instanceof Map)) yield [window, this.key.length === 1 ? head : head + CUBE_SEPARATOR + this.rest(first(slot)), slot];
        else for (const [rest, e] of slot) yield [window, head + CUBE_SEPARATOR + rest, e];
      }
    }
  }

  /** Drops the windows `gone` says are over. */
  expire(gone: (window: number) => boolean): void {
    for (const window of this.windows.keys()) if (gone(window)) this.windows.delete(window);
  }

  /** The key tuple after its first field (every field present). */
  private rest(c: Click): string {
    const key = this.key;
    if (key.length === 2) return clickField(c, key[1]!)!;
    const values: string[] = [];
    for (let i = 1; i < key.length; i++) values.push(clickField(c, key[i]!)!);
    return values.join(CUBE_SEPARATOR);
  }
}

function first(e: Entry): Click {
  return e instanceof RuleGroup ? e.members[0]!.c : e.c;
}

/** The first field's value of a click's key tuple, or undefined when any key field is missing. */
export function headOf(c: Click, key: readonly string[]): string | undefined {
  const head = clickField(c, key[0]!);
  if (head === undefined) return undefined;
  for (let i = 1; i < key.length; i++) if (clickField(c, key[i]!) === undefined) return undefined;
  return head;
}

/**
 * The key tuple of a click (values joined by CUBE_SEPARATOR, as keyValue), or undefined when a field
 * is missing. Joined, not concatenated: a group's map keeps its key, and a flat string costs half
 * of a chain of concatenations.
 */
export function keyOf(c: Click, key: readonly string[]): string | undefined {
  const first = clickField(c, key[0]!);
  if (key.length === 1 || first === undefined) return first;
  const values = [first];
  for (let i = 1; i < key.length; i++) {
    const v = clickField(c, key[i]!);
    if (v === undefined) return undefined;
    values.push(v);
  }
  return values.join(CUBE_SEPARATOR);
}
