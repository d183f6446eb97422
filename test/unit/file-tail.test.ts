/** FileTail on real files (no gateway): what it hands out to send, and when, across rotations. */
import { appendFileSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileTail, type TailNotice } from '../../src/cli/tail/file-tail.ts';

let dir: string;
let file: string;
const notices: TailNotice[] = [];
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-tail-'));
  file = path.join(dir, 'a.ndjson');
  notices.length = 0;
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const line = (id: string): string => `${JSON.stringify({ click_id: id, ad_id: 'a', ts: 1 })}\n`;
const tail = (restored?: ReturnType<FileTail['position']>): FileTail => new FileTail(file, restored, { batchLines: 100, notice: (n) => notices.push(n) });
/** Everything the tail hands out now, committing each batch: the click ids. */
async function drain(t: FileTail): Promise<string[]> {
  const ids: string[] = [];
  for (let b = await t.next(); b; b = await t.next()) {
    ids.push(...b.records.map((r) => (JSON.parse(r.body) as { click_id: string }).click_id));
    t.commit(b);
  }
  return ids;
}

describe('FileTail', () => {
  it('waits for a line to be complete; nothing before the file exists', async () => {
    const t = tail();
    expect(await t.next()).toBeUndefined();
    writeFileSync(file, line('c1') + line('c2').slice(0, 10));
    expect(await drain(t)).toEqual(['c1']);
    appendFileSync(file, line('c2').slice(10));
    expect(await drain(t)).toEqual(['c2']);
    await t.close();
  });

  it('rename: reads the old file to its end (an unterminated last line too), then the new one', async () => {
    const t = tail();
    writeFileSync(file, line('c1'));
    expect(await drain(t)).toEqual(['c1']);
    appendFileSync(file, line('c2') + line('c3').trimEnd());
    renameSync(file, `${file}.1`);
    writeFileSync(file, line('n1'));
    expect(await drain(t)).toEqual(['c2', 'c3', 'n1']);
    expect(notices.map((n) => n.kind)).toContain('rotated');
    await t.close();
  });

  it('truncate and rewrite past the offset: from 0, never the middle of the new content', async () => {
    const t = tail();
    writeFileSync(file, line('c1') + line('c2'));
    expect(await drain(t)).toEqual(['c1', 'c2']);
    writeFileSync(file, line('n1') + line('n2') + line('n3') + line('n4'));
    expect(await drain(t)).toEqual(['n1', 'n2', 'n3', 'n4']);
    truncateSync(file, 0);
    appendFileSync(file, line('m1'));
    expect(await drain(t)).toEqual(['m1']);
    expect(notices.filter((n) => n.kind === 'truncated')).toHaveLength(2);
    await t.close();
  });

  it('restart: resumes at the saved offset, and finds a file rotated meanwhile by its inode', async () => {
    const t = tail();
    writeFileSync(file, line('c1'));
    expect(await drain(t)).toEqual(['c1']);
    const saved = t.position();
    await t.close();
    appendFileSync(file, line('c2'));
    renameSync(file, `${file}.1`);
    writeFileSync(file, line('n1'));
    const t2 = tail(saved);
    expect(await drain(t2)).toEqual(['c2', 'n1']);
    await t2.close();
    // A restart whose file is gone altogether: says so, reads the path's file from 0.
    const t3 = tail({ ...saved!, ino: saved!.ino + 1_000_000 });
    expect(await drain(t3)).toEqual(['n1']);
    expect(notices.some((n) => n.kind === 'lost')).toBe(true);
    await t3.close();
  });
});
