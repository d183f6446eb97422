/** A live ranking's identity: window length in minutes and an optional filter (dimension or cube value). */
export interface RankSpec {
  window: number;
  dim: string | null;
  value: string | null;
}

/** Stable string key of a spec, used on the wire and as a map key. */
export function specKey(s: RankSpec): string {
  return `${s.window}/${s.dim ?? ''}/${s.value ?? ''}`;
}

export function parseSpecKey(key: string): RankSpec {
  const [w, dim, value] = key.split('/');
  return { window: Number(w), dim: dim ? dim : null, value: dim ? (value ?? '') : null };
}
