import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, type AdaggError } from '../../src/errors.ts';
import { compileOptions } from '../../src/options.ts';
import { ArchiveBuffer, deadLetterRow, stagingDir } from '../../src/runtime/archive/archive-buffer.ts';
import { archiveRoot, archiverSpecs } from '../../src/runtime/archive/archivers.ts';
import { duckConnection, openDuckConnections, sqlString } from '../../src/runtime/archive/duckdb.ts';
import { topology } from '../../src/runtime/topology.ts';

/** The archiver's DuckDB buffer: rows in, one staged Parquet file per UTC hour out, with the layout's columns. */
describe('archive buffer', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-archive-buffer-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('stages one file per event-time hour, rows in (seq, pos) order, every column kept', async () => {
    const b = await ArchiveBuffer.open('s2', 'a-s2');
    const h = Date.UTC(2026, 2, 1, 23);
    b.appendClicks('p.clicks.2', 7, [
      { click_id: 'x1', ad_id: 'ad1', ts: h + 5, user_id: 'u', ip: '1.2.3.4', country: 'US', attrs: { device: 'ios' } },
      { click_id: 'x2', ad_id: 'ad2', ts: h + 3600_000 + 1 },
    ]);
    b.appendClicks('p.clicks.2', 9, [{ click_id: 'x1', ad_id: 'ad1', ts: h + 10 }]);
    expect(b.rows).toBe(3);
    const staging = stagingDir(dir, 'a-s2');
    const files = await b.stage(dir, staging, 5, 9, 4);
    expect(files.map((f) => [path.relative(dir, f.final), f.rows])).toEqual([
      ['raw/date=2026-03-01/hour=23/s2-000000000005-000000000009.parquet', 2],
      ['raw/date=2026-03-02/hour=00/s2-000000000005-000000000009.parquet', 1],
    ]);
    expect((await readdir(staging)).every((n) => n.endsWith('.tmp-4'))).toBe(true);
    const c = await duckConnection();
    const rows = (await c.runAndReadAll(`SELECT * FROM read_parquet(${sqlString(files[0]!.tmp)})`)).getRowObjects();
    c.closeSync();
    expect(rows).toEqual([
      { click_id: 'x1', ad_id: 'ad1', ts: BigInt(h + 5), user_id: 'u', ip: '1.2.3.4', country: 'US', attrs: '{"device":"ios"}', subject: 'p.clicks.2', seq: 7n, pos: 0 },
      { click_id: 'x1', ad_id: 'ad1', ts: BigInt(h + 10), user_id: null, ip: null, country: null, attrs: null, subject: 'p.clicks.2', seq: 9n, pos: 0 },
    ]);
    await b.clear();
    expect(b.rows).toBe(0);
    expect(await b.stage(dir, staging, 10, 12, 4)).toEqual([]);
    await b.close();
  });

  it('dead letters: partitioned by arrival, the actor source split into unit and sequence', async () => {
    const b = await ArchiveBuffer.open('dlq', 'a-dlq');
    const at = Date.UTC(2026, 2, 1, 4, 30);
    const letter = { reason: 'too_old', error: 'old', source: 'shard 3 seq 17', at, click: { click_id: 'k', ad_id: 'a', ts: 5 } };
    b.appendDeadLetter(2, at, Buffer.from(JSON.stringify(letter)));
    b.appendDeadLetter(3, at, Buffer.from('not json'));
    const files = await b.stage(dir, stagingDir(dir, 'a-dlq'), 1, 3, 1);
    expect(files.map((f) => path.relative(dir, f.final))).toEqual(['dead-letters/date=2026-03-01/hour=04/dlq-000000000001-000000000003.parquet']);
    const c = await duckConnection();
    const rows = (await c.runAndReadAll(`SELECT seq, reason, src_unit, src_seq, click_id, raw FROM read_parquet(${sqlString(files[0]!.tmp)})`)).getRowObjects();
    c.closeSync();
    expect(rows).toEqual([
      { seq: 2n, reason: 'too_old', src_unit: 's3', src_seq: 17n, click_id: 'k', raw: null },
      { seq: 3n, reason: 'unreadable', src_unit: null, src_seq: null, click_id: null, raw: 'not json' },
    ]);
    await b.close();
    expect(deadLetterRow(Buffer.from(JSON.stringify({ reason: 'too_old', source: 'hot child h61-4-1 seq 5', at: 1 })), 0)).toMatchObject({ srcUnit: 'h61-4-1', srcSeq: 5 });
  });

  it('close: a statement in flight is interrupted and awaited, then appender, connection and instance go; nothing touches DuckDB after', async () => {
    const before = openDuckConnections();
    const b = await ArchiveBuffer.open('s1', 'a-s1');
    expect(openDuckConnections()).toBe(before + 1);
    const h = Date.UTC(2026, 2, 1, 0);
    for (let seq = 1; seq <= 1000; seq++) b.appendClicks('p.clicks.1', seq, Array.from({ length: 100 }, (_, i) => ({ click_id: `c${seq}-${i}`, ad_id: `a${i}`, ts: h + seq * 1000 + i })));
    const staging = stagingDir(dir, 'a-s1');
    const staged = b.stage(dir, staging, 1, 1000, 2);
    staged.catch(() => undefined);
    await b.close();
    // The statement in flight was interrupted (or had finished): the stage ends either way.
    await expect(Promise.race([staged.then(() => 'settled', () => 'settled'), new Promise((r) => setTimeout(() => r('hung'), 10_000))])).resolves.toBe('settled');
    expect(openDuckConnections()).toBe(before);
    await b.close();
    const closed = { code: ErrorCode.ArchiveClosed };
    expect(() => b.appendClicks('p.clicks.1', 2000, [{ click_id: 'z', ad_id: 'a', ts: h }])).toThrow(expect.objectContaining(closed));
    await expect(b.stage(dir, staging, 1, 2000, 2)).rejects.toMatchObject(closed);
    await expect(b.clear()).rejects.toMatchObject(closed);
  });

  it('archivers: on by default under ./data/archive from the working directory; shard 0 also takes hot and dead letters', () => {
    const o = compileOptions({});
    expect(o.archive).toBe('on');
    expect(archiveRoot(o)).toBe(path.join(process.cwd(), 'data', 'archive'));
    expect(archiveRoot(compileOptions({ archiveDir: '/x/y' }))).toBe('/x/y');
    expect(() => compileOptions({ archive: 'yes' })).toThrow(/archive/);
    const t = topology('p');
    expect(archiverSpecs(0, t).map((s) => [s.unit, s.stream, s.filter])).toEqual([
      ['s0', 'P_CLICKS', 'p.clicks.0'],
      ['hot', 'P_CLICKS', 'p.hot.>'],
      ['dlq', 'P_DLQ', 'p.dlq.>'],
    ]);
    expect(archiverSpecs(5, t).map((s) => s.unit)).toEqual(['s5']);
  });
});
