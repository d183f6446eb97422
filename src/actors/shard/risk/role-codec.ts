/**
 * Stored form of a risk-role group (hash part `rp` of persist.ts, one field per group): short
 * text instead of JSON, as a group is rewritten whenever one of its shards reports.
 * `max (RS shard RS seq RS told RS values)...`, RS = U+001E, values joined by U+001F.
 * Values that could not be told apart in that form (empty, or holding a separator) make the whole
 * group stored as JSON `[max, [[shard, seq, told, values]...]]` instead. The window's end is in
 * the state head.
 */

/** Distinct values reported: one is kept as the string itself (most groups have one). */
export type Values = string | readonly string[];

export const valueCount = (v: Values): number => (typeof v === 'string' ? 1 : v.length);
export const valueList = (v: Values): readonly string[] => (typeof v === 'string' ? [v] : v);

/** The latest presence of one shard and the last verdict told to it. */
export interface RoleReport {
  shard: number;
  seq: number;
  values: Values;
  told: boolean;
}

const RS = '\u001e';
const US = '\u001f';

export function encodeRoleGroup(max: number, reports: readonly RoleReport[]): string {
  // Joined, not concatenated: a flat string (a store that keeps it keeps half the bytes).
  const parts: Array<string | number> = [max];
  for (const p of reports) {
    const list = valueList(p.values);
    for (const v of list) if (v === '' || v.includes(RS) || v.includes(US)) return JSON.stringify([max, reports.map((r) => [r.shard, r.seq, r.told, valueList(r.values)])]);
    parts.push(p.shard, p.seq, p.told ? 1 : 0, typeof p.values === 'string' ? p.values : list.join(US));
  }
  return parts.join(RS);
}

/** A risk-role group: the latest `max` reported and each shard's report. */
export interface RoleGroup {
  max: number;
  reports: RoleReport[];
}

/** The group, or null when the value is malformed. */
export function decodeRoleGroup(v: string): RoleGroup | null {
  if (v.startsWith('[')) return decodeJson(v);
  const parts = v.split(RS);
  if (parts.length < 5 || (parts.length - 1) % 4 !== 0) return null;
  const max = Number(parts[0]);
  const reports: RoleReport[] = [];
  for (let i = 1; i < parts.length; i += 4) {
    const told = parts[i + 2];
    const values = parts[i + 3]!;
    if (told !== '0' && told !== '1') return null;
    reports.push({ shard: Number(parts[i]), seq: Number(parts[i + 1]), told: told === '1', values: values === '' ? [] : values.includes(US) ? values.split(US) : values });
  }
  return valid(max, reports) ? { max, reports } : null;
}

function decodeJson(v: string): RoleGroup | null {
  const doc = JSON.parse(v) as unknown;
  if (!Array.isArray(doc) || doc.length !== 2 || !Array.isArray(doc[1])) return null;
  const [max, list] = doc as [unknown, unknown[]];
  const reports: RoleReport[] = [];
  for (const r of list) {
    if (!Array.isArray(r) || r.length !== 4) return null;
    const [shard, seq, told, values] = r as unknown[];
    if (typeof told !== 'boolean' || !Array.isArray(values) || !values.every((x) => typeof x === 'string')) return null;
    reports.push({ shard: Number(shard), seq: Number(seq), told, values: values.length === 1 ? (values[0] as string) : (values as string[]) });
  }
  return typeof max === 'number' && valid(max, reports) ? { max, reports } : null;
}

function valid(max: number, reports: readonly RoleReport[]): boolean {
  return Number.isSafeInteger(max) && reports.length > 0 && reports.every((r) => Number.isSafeInteger(r.shard) && Number.isFinite(r.seq));
}
