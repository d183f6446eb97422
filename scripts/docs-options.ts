/**
 * README's configuration table, generated from the options table (src/options.ts).
 *
 *   npm run docs:options            # rewrites the table between the markers
 *   npm run docs:options -- --check # exit 1 if the table differs from the generated one
 *
 * The table sits between `<!-- options:start -->` and `<!-- options:end -->` in exactly one of
 * README.md and docs/*.md, so the section can move between them.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { OPTIONS, type OptionSpec } from '../src/options.ts';

export const START = '<!-- options:start -->';
export const END = '<!-- options:end -->';
const ROOT = path.resolve(import.meta.dirname, '..');

/**
 * Environment variables read outside the options (by the logger, the CLI and the local servers),
 * listed in the table after the options.
 */
export const PROCESS_ENV_VARS: ReadonlyArray<{ env: string; default: string; doc: string }> = [
  { env: 'ADAGG_LOG_LEVEL', default: '`info`', doc: 'pino level (format: ADAGG_LOG_FORMAT)' },
  { env: 'ADAGG_NODE_ID', default: '`local` (start) / host-pid (node)', doc: 'runtime node id (`[A-Za-z0-9_-]`)' },
  { env: 'ADAGG_NATS_SERVER', default: '`nats-server` on `PATH`', doc: 'the nats-server binary `npm start` and the tests run' },
  { env: 'ADAGG_REDIS_SERVER', default: '`redis-server` on `PATH`', doc: 'the redis-server binary `npm start` and the tests run' },
  { env: 'ADAGG_TOKEN', default: '(none)', doc: 'bearer token `adagg ingest` sends (`--token` overrides it)' },
];

/** What an option accepts: its kind and bounds. */
function accepts(spec: OptionSpec): string {
  switch (spec.kind) {
    case 'int':
      return spec.max === undefined ? `integer ≥ ${spec.min}` : `integer ${spec.min}..${spec.max}`;
    case 'string':
      return spec.pattern ? `\`${spec.pattern.source.slice(1, -1)}\`` : 'non-empty string';
    case 'list':
      return spec.accepts;
    case 'url':
      return spec.accepts ?? 'URL';
  }
}

function defaultText(spec: OptionSpec): string {
  if (spec.docDefault !== undefined) return spec.docDefault;
  switch (spec.kind) {
    case 'int':
      return String(spec.default);
    case 'string':
      return `\`${spec.default}\``;
    case 'list':
      return spec.default.length === 0 ? '(none)' : `\`${spec.default.join(',')}\``;
    case 'url':
      return '(none)';
  }
}

/** The markdown table, one row per option, then the environment variables read outside the options. */
export function renderOptionsTable(): string {
  const rows = ['| variable | option | default | accepts | meaning |', '| --- | --- | --- | --- | --- |'];
  for (const [key, spec] of Object.entries(OPTIONS) as Array<[string, OptionSpec]>) {
    rows.push(`| \`${spec.env}\` | \`${key}\` | ${defaultText(spec)} | ${accepts(spec)} | ${spec.doc} |`);
  }
  for (const v of PROCESS_ENV_VARS) rows.push(`| \`${v.env}\` | | ${v.default} | | ${v.doc} |`);
  return rows.join('\n');
}

/** The markdown file holding the markers (README.md or a file of docs/); exactly one must. */
export function findTableFile(root = ROOT): string {
  const docs = path.join(root, 'docs');
  const candidates = [
    path.join(root, 'README.md'),
    ...(existsSync(docs) ? readdirSync(docs).filter((f) => f.endsWith('.md')).map((f) => path.join(docs, f)) : []),
  ];
  const found = candidates.filter((f) => readFileSync(f, 'utf8').includes(START));
  if (found.length !== 1) throw new Error(`expected ${START} in exactly one of README.md, docs/*.md; found ${found.length}`);
  return found[0]!;
}

/** The file's text with the table between the markers replaced, and the table it held. */
export function spliceTable(text: string, table: string): { text: string; current: string } {
  const a = text.indexOf(START);
  const b = text.indexOf(END, a);
  if (a < 0 || b < 0) throw new Error(`${START} … ${END} not found`);
  const current = text.slice(a + START.length, b).trim();
  return { text: `${text.slice(0, a + START.length)}\n${table}\n${text.slice(b)}`, current };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = findTableFile();
  const table = renderOptionsTable();
  const { text, current } = spliceTable(readFileSync(file, 'utf8'), table);
  const rel = path.relative(ROOT, file);
  if (process.argv.includes('--check')) {
    if (current !== table) {
      console.error(`${rel}: the options table differs from src/options.ts; run npm run docs:options`);
      process.exit(1);
    }
    console.log(`${rel}: options table is current`);
  } else {
    writeFileSync(file, text);
    console.log(`${rel}: options table written (${Object.keys(OPTIONS).length} options)`);
  }
}
