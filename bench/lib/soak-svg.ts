/** bench/results/soak-<label>-<rate>.svg: the soak samples as small multiples over time. */
import { allowedLatenessMs, type SoakRun } from './soak-run.ts';
import type { SoakSample } from './soak-sampler.ts';
import { renderPanels, type Panel } from './svg.ts';

const pts = (run: SoakRun, f: (s: SoakSample) => number | null, scale = 1): Array<[number, number]> =>
  run.samples.flatMap((s) => {
    const y = f(s);
    return y === null || !Number.isFinite(y) ? [] : [[s.t / 60, y / scale] as [number, number]];
  });

/** KiB or MiB, whichever suits the largest value of the run. */
function bytesUnit(run: SoakRun, f: (s: SoakSample) => number | null): [string, number] {
  const max = Math.max(0, ...run.samples.map((s) => f(s) ?? 0));
  return max >= 2 ** 20 ? ['MiB', 2 ** 20] : ['KiB', 1024];
}

export function soakSvg(run: SoakRun): string {
  const limitS = allowedLatenessMs(run) / 1000 + 5;
  const perCommit = (s: SoakSample): number | null => Math.max(s.bytesPerCommitRedis ?? 0, s.bytesPerCommitMetric ?? 0) || null;
  const [unit, scale] = bytesUnit(run, perCommit);
  const panels: Panel[] = [
    { title: 'tracked ids (sum over shards)', series: [{ name: 'tracked ids', color: '#1f77b4', points: pts(run, (s) => s.trackedIds) }] },
    {
      title: `bytes per commit, ${unit}`,
      series: [
        { name: 'Redis net input / commits', color: '#d62728', points: pts(run, (s) => s.bytesPerCommitRedis, scale) },
        { name: 'adagg_commit_bytes', color: '#ff7f0e', dash: '5 3', points: pts(run, (s) => s.bytesPerCommitMetric, scale) },
      ].filter((s) => s.points.length > 0),
    },
    {
      title: 'write MB/s: Redis net input vs clicks',
      series: [
        { name: 'Redis writes', color: '#d62728', points: pts(run, (s) => s.redisWriteBytesPerSec, 1e6) },
        { name: 'click NDJSON', color: '#2ca02c', points: pts(run, (s) => s.clickBytesPerSec, 1e6) },
        { name: '3 × clicks (target 3)', color: '#2ca02c', dash: '6 3', points: pts(run, (s) => 3 * s.clickBytesPerSec, 1e6) },
      ],
    },
    {
      title: 'commit time, ms',
      series: [
        { name: 'mean', color: '#9467bd', points: pts(run, (s) => s.commitMeanMs) },
        { name: 'p99 (buckets)', color: '#8c564b', dash: '5 3', points: pts(run, (s) => s.commitP99Ms) },
      ],
    },
    {
      title: 'memory, MiB',
      series: [
        { name: 'Redis used_memory', color: '#d62728', points: pts(run, (s) => s.redisUsedMemory, 2 ** 20) },
        { name: 'service RSS', color: '#1f77b4', points: pts(run, (s) => s.rss, 2 ** 20) },
      ],
    },
    {
      title: 'consumer lag, messages (sum over shards)',
      series: [{ name: 'lag', color: '#7f7f7f', points: pts(run, (s) => s.lag) }],
    },
    {
      title: 'watermark delay, s (max over shards)',
      series: [
        { name: 'gauge', color: '#17becf', points: pts(run, (s) => s.watermarkDelayS) },
        { name: '/v1/status', color: '#bcbd22', dash: '5 3', points: pts(run, (s) => s.statusWatermarkDelayS) },
      ],
      refs: [{ y: limitS, label: `target ${limitS} s (lateness + 5 s)`, color: '#d62728' }],
    },
    {
      title: 'clicks/s: accepted (sender), processed (service)',
      series: [
        { name: 'accepted', color: '#2ca02c', points: pts(run, (s) => s.ingestRate) },
        { name: 'processed', color: '#1f77b4', dash: '5 3', points: pts(run, (s) => s.processedRate ?? null) },
      ],
      refs: [{ y: run.rate, label: `offered ${run.rate}/s`, color: '#2ca02c' }],
    },
    {
      title: 'CPU cores: service, other processes; load average',
      series: [
        { name: 'service', color: '#1f77b4', points: pts(run, (s) => s.serviceCores) },
        { name: 'others (noise)', color: '#d62728', points: pts(run, (s) => s.cores?.others ?? null) },
        { name: 'load1', color: '#7f7f7f', dash: '3 3', points: pts(run, (s) => s.load1) },
      ],
      refs: [{ y: 2, label: '2 cores', color: '#999' }],
    },
  ];
  const end = run.outcome.completed ? `${run.minutes} min` : `ENDED EARLY at ${(run.outcome.durationS / 60).toFixed(1)} min: ${run.outcome.endedEarly ?? '?'}`;
  return renderPanels({
    title: `adagg soak (${run.label}): ${run.rate.toLocaleString('en-US')} clicks/s over HTTP, ${run.config.shards} shards`,
    subtitle: `service ${run.service.commit}${run.service.dirty ? '+dirty' : ''}, ${end}, ${run.date.slice(0, 16)}Z; samples every ${run.config.sampleEveryS} s`.slice(0, 160),
    xLabel: 'minutes since the first click',
    panels,
    columns: 3,
    panelWidth: 420,
  });
}
