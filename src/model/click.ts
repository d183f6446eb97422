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

/** The value of a dimension on a click (`country`, `user_id`, `ip` or an extra attribute). */
export function dimensionValue(click: Click, dim: string): string | undefined {
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
