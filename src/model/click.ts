/**
 * A validated click as it travels through JetStream and the shard actors.
 * `ts` is epoch milliseconds (UTC). Extra string attributes (e.g. `device`) ride in `attrs`
 * so configured dimensions beyond `country` can be aggregated without a schema change.
 */
export interface Click {
  click_id: string;
  ad_id: string;
  ts: number;
  user_id?: string | undefined;
  ip?: string | undefined;
  country?: string | undefined;
  attrs?: Record<string, string> | undefined;
}

/** Joins the values of a cube's dimensions (unit separator: it cannot occur in a validated value). */
export const CUBE_SEPARATOR = '\u001f';

/**
 * The value of a dimension on a click (`country`, `user_id`, `ip` or an extra attribute), or of a
 * cube such as `country+device` (the values joined by CUBE_SEPARATOR; undefined if any is absent).
 */
export function dimensionValue(click: Click, dim: string): string | undefined {
  if (dim.includes('+')) {
    const parts = dim.split('+');
    const values: string[] = [];
    for (const d of parts) {
      const v = singleValue(click, d);
      if (v === undefined) return undefined;
      values.push(v);
    }
    return values.join(CUBE_SEPARATOR);
  }
  return singleValue(click, dim);
}

function singleValue(click: Click, dim: string): string | undefined {
  switch (dim) {
    case 'country':
      return click.country;
    case 'user_id':
      return click.user_id;
    case 'ip':
      return click.ip;
    default:
      return click.attrs?.[dim];
  }
}
