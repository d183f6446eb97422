/** The shape of one option in the options table (src/options.ts), and units its entries share. */

export interface Described {
  /** Environment variable that sets the option. */
  env: string;
  /** One line for the configuration table (docs/configuration.md). */
  doc: string;
  /** The table's default column, where the value alone says less (`7 days`). */
  docDefault?: string;
}

/** An integer option: a number, or a string of digits from the environment. */
export interface IntOption extends Described {
  kind: 'int';
  default: number;
  /** Smallest accepted value. */
  min: 0 | 1;
  /** Largest accepted value (none: any safe integer). */
  max?: number;
  /** The error for a value outside min..max, where `must be > 0` / `must be <= max` would say less. */
  rangeError?: string;
}

/** A non-empty string option, optionally matching a pattern. */
export interface StringOption extends Described {
  kind: 'string';
  default: string;
  pattern?: RegExp;
}

/** A list option: an array, or a comma-separated string from the environment. */
export interface ListOption extends Described {
  kind: 'list';
  default: readonly string[];
  /** Checks one item: an error message, or undefined when the item is good. */
  checkItem: (item: string) => string | undefined;
  /** The error when an item is listed twice. */
  duplicateError: string;
  /** The table's accepts column. */
  accepts: string;
}

/**
 * An option with no default: a server URL (unset, `npm start` starts a local server) or a file
 * path (unset, the feature it configures is off or `npm start` provides one).
 */
export interface UrlOption extends Described {
  kind: 'url';
  /** The table's accepts column. @default 'URL' */
  accepts?: string;
}

export type OptionSpec = IntOption | StringOption | ListOption | UrlOption;

export const SECOND = 1000;
export const DAY = 24 * 3600_000;
/** A dimension name. */
export const NAME = /^[A-Za-z0-9_]{1,32}$/;
