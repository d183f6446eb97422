import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { END, findTableFile, PROCESS_ENV_VARS, renderOptionsTable, spliceTable, START } from '../../scripts/docs-options.ts';
import { ENV_VARS, OPTIONS } from '../../src/options.ts';

describe("README's configuration table", () => {
  it('is the table generated from src/options.ts (npm run docs:options rewrites it)', () => {
    const text = readFileSync(findTableFile(), 'utf8');
    const { current } = spliceTable(text, renderOptionsTable());
    expect(current, 'README options table is stale: run npm run docs:options').toBe(renderOptionsTable());
  });

  it('has a row for every environment variable', () => {
    const table = renderOptionsTable();
    for (const name of [...Object.keys(ENV_VARS), ...PROCESS_ENV_VARS.map((v) => v.env)]) expect(table).toContain(`| \`${name}\` |`);
    expect(table.split('\n')).toHaveLength(2 + Object.keys(OPTIONS).length + PROCESS_ENV_VARS.length);
  });

  it('splicing replaces only what lies between the markers', () => {
    const doc = `# Title\n\nbefore\n${START}\n| old |\n${END}\nafter\n`;
    const { text, current } = spliceTable(doc, '| new |');
    expect(current).toBe('| old |');
    expect(text).toBe(`# Title\n\nbefore\n${START}\n| new |\n${END}\nafter\n`);
    expect(spliceTable(text, '| new |').current).toBe('| new |');
  });
});
