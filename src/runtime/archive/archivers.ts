import path from 'node:path';
import { ErrorCode, type AdaggError } from '../../errors.ts';
import type { CompiledOptions } from '../../options.ts';
import { Supervisor } from '../supervisor.ts';
import type { Topology } from '../topology.ts';
import { Archiver, type ArchiverDeps, type ArchiverSpec } from './archiver.ts';

/** The archivers that follow one shard: its own subject, and on shard 0 also the hot child subjects and the dead letters. */
export function archiverSpecs(shard: number, topo: Topology): ArchiverSpec[] {
  const specs: ArchiverSpec[] = [{ unit: `s${shard}`, stream: topo.clicksStream, filter: topo.clickSubject(shard) }];
  if (shard === 0) {
    specs.push({ unit: 'hot', stream: topo.clicksStream, filter: topo.hotSubjects });
    specs.push({ unit: 'dlq', stream: topo.deadLetterStream, filter: topo.deadLetterSubject('>') });
  }
  return specs;
}

/** The archive folder, absolute: a relative ADAGG_ARCHIVE_DIR is taken from the working directory. */
export function archiveRoot(o: Pick<CompiledOptions, 'archiveDir'>): string {
  return path.resolve(o.archiveDir);
}

/**
 * Starts the archivers of `shard` (when ADAGG_ARCHIVE is on), each under its own supervisor that
 * restarts it from its committed sequence and stops it for good once fenced (a newer owner took
 * the unit, as for shard actors). Returns the supervisors; closing one flushes and stops it (within
 * `archiveStopMs`) and closes its DuckDB objects.
 */
export function startArchivers(
  shard: number,
  topo: Topology,
  o: Pick<CompiledOptions, 'archive' | 'archiveDir' | 'archiveFlushMs' | 'archiveFileClicks' | 'archiveStopMs'>,
  deps: Omit<ArchiverDeps, 'root' | 'flushMs' | 'fileClicks' | 'stopMs'>,
): Supervisor[] {
  if (o.archive !== 'on') return [];
  const full: ArchiverDeps = { ...deps, root: archiveRoot(o), flushMs: o.archiveFlushMs, fileClicks: o.archiveFileClicks, stopMs: o.archiveStopMs };
  return archiverSpecs(shard, topo).map((spec) => {
    const a = new Archiver(spec, full);
    const sup = new Supervisor(`archiver-${a.unitId}`, (signal) => a.run(signal), deps.clock, deps.log, {
      isFatal: (err) => (err as AdaggError | undefined)?.code === ErrorCode.Fenced,
    });
    sup.start();
    return sup;
  });
}
