/** Writes bench/results/latest.md, latest.json and throughput.svg. */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ProfileSummary } from './cpuprofile.ts';
import type { Row } from './context.ts';
import type { Sample } from './drive.ts';
import { renderChart } from './svg.ts';

export interface ReportMeta {
  command: string;
  date: string;
  mode: string;
  versions: Record<string, string>;
  config: Record<string, unknown>;
  durationMs: number;
  loadavg: number[];
}

export function markdownTable(rows: readonly Row[]): string {
  const out = ['| scenario | figure | value | notes |', '|---|---|---:|---|'];
  for (const r of rows) out.push(`| ${r.scenario} | ${r.figure} | ${r.value} | ${(r.note ?? '').replace(/\|/g, '\\|')} |`);
  return out.join('\n');
}

export const MEANINGS = `## What each figure means

- **shard actor failures / other processes**: the service's own 'actor failed, restarting' log lines
  during a scenario (a healthy run has none; a run whose actors fail and commit nothing for 30 s is given
  up and reported as FAILED with the first error), and the CPU used by processes other than the bench,
  the service, nats-server and redis-server (from /proc/stat): the machine is shared, so a high value
  means the figures of that scenario are depressed by a neighbour.

- **pipeline events/s**: events sent by the load generator (duplicates included) divided by the time from
  the first publish until every shard's committed sequence in Redis (\`HGET <prefix>:{s<n>}:meta seq\`)
  reached the last stream sequence of its subject, i.e. until the final state (counts, dedupe ids,
  snapshot) of every event was durably committed. Median of the runs, min–max beside it. The load
  generator and the service are separate processes sharing the machine's 2 cores with nats-server and
  redis-server, so the figure is the whole system's rate on this machine, not the service's alone.
- **producer publish rate**: events acknowledged by JetStream per second while publishing (first publish
  → last ack). When it is close to the pipeline figure, publishing (or the shared CPU) is the limit;
  a large *drain* time means the service fell behind the producer.
- **exact**: after every minute closed (watermark passed), adagg's final counts in Redis compared with the
  truth computed by the generator (each click_id once): the top 100 ads by truth + 200 random touched
  ads summed over minutes, the per-country counts of the top ads, and a full comparison of every ad's
  total over all minutes. true only if all match and the grand total equals the distinct clicks.
- **transport events/s**: the same messages (same producer, batch size, in-flight window, subjects) into
  a stream with the same layout, read by one ordered consumer per shard subject that only counts
  messages; first publish → all consumed. This is what NATS + the producer allow on this machine;
  **pipeline / transport** is the share of it that the exactly-once pipeline keeps.
- **naive events/s**: one consumer process, durable pull consumer with explicit acks, \`HINCRBY\` per event
  via one ioredis pipeline per message, ack after the pipeline returns (Yahoo streaming benchmark style).
  It never dedupes click_ids, so even without a crash it over-counts by the duplicates sent.
  **after SIGKILL**: a second durable on the same stream killed at ~40% and restarted; over-count is
  Σ max(0, counted − truth) over ads, under-count Σ max(0, truth − counted); "from redelivery" is the
  over-count beyond the no-crash run (messages written to Redis but not acked before the kill).
- **latency**: a fixed offered rate of live clicks; every 100 ms a probe click on its own ad. *ack → visible*
  is from the probe's PubAck until \`GET /v1/ads/<probe>/aggregated_count\` (polled every 20 ms, so up to
  20 ms of the figure is polling) shows it. *ack → final* is until that minute reports \`final: true\`;
  it is dominated by the wait for the minute to end plus the allowed lateness (10 s), so *beyond close*
  (final time − (minute end + allowed lateness)) is the part the pipeline adds. After the measured window
  the same offered load keeps running (unmeasured) until the final probes' minutes close, or the wait
  limit passes, or shard actors start failing.
- **http**: events/s accepted through \`POST /v1/clicks\` (NDJSON, 1000–5000 lines per body, several
  keep-alive clients; the reply comes after JetStream acknowledged the clicks), and events/s until the
  shard actors committed them. The gateway shares its process with the shard actors. Event time is spread
  like the throughput scenarios (not live), so the figure is about ingest, not about one huge minute.
- **recovery**: a backlog built while the service is stopped; cold start; SIGKILL once the actors have
  processed half the backlog (\`adagg_events_processed_total\`; what was committed by then is reported);
  restart (service log level info, to read its log lines). *restart → ready*: spawn → first 200 from
  /readyz. *restart → restored*: spawn → the last shard's 'shard actor restored' line; *boot* is spawn →
  the first shard actor incarnation starting ('lifecycle transition' to running); *snapshot restore* is
  first actor start → last 'shard actor restored' (take ownership, GET the snapshot, decode it, for all
  shards on one event loop). *replay*: last shard restored → committed sequence at the stream end on
  every shard (re-reads everything after the last commit before the kill).
- **memory**: VmRSS of the service process sampled every 250 ms during the pipeline run (baseline after
  ready, steady = median of the middle half of the run, peak); *RSS Δ per 1M tracked ids* is
  (RSS at the end − baseline) / \`tracked_ids\` from /v1/status × 10^6, an upper bound that also includes open
  windows and garbage; *dedupe table per 1M ids* is ClickDedup's own byteLength measured in-process.
`;

export function throughputSvg(samples: readonly Sample[], title: string, subtitle: string): string {
  const pts = (f: (s: Sample) => number) => samples.map((s) => [s.t / 1000, f(s)] as const);
  const windowed = (get: (s: Sample) => number): Array<readonly [number, number]> => {
    const out: Array<readonly [number, number]> = [[0, 0]];
    let j = 0;
    for (let i = 1; i < samples.length; i++) {
      const si = samples[i]!;
      while (j < i - 1 && samples[j + 1]!.t <= si.t - 1000) j++;
      const sj = samples[j]!;
      const dt = (si.t - sj.t) / 1000;
      if (dt > 0) out.push([si.t / 1000, (get(si) - get(sj)) / dt]);
    }
    return out;
  };
  return renderChart({
    title,
    subtitle,
    xLabel: 'seconds since first publish',
    leftLabel: 'events/s (1 s window)',
    rightLabel: 'lag (events acked, not yet committed)',
    series: [
      { name: 'published (JetStream acks)', color: '#1f77b4', axis: 'left', points: windowed((s) => s.acked) },
      { name: 'committed in Redis', color: '#2ca02c', axis: 'left', points: windowed((s) => s.done) },
      { name: 'lag', color: '#d62728', axis: 'right', points: pts((s) => s.acked - s.done), dash: '5,4' },
    ],
  });
}

export async function writeResults(
  dir: string,
  meta: ReportMeta,
  rows: readonly Row[],
  data: Record<string, unknown>,
  extraSections: string[],
  svg: string | null,
): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const md = [
    '# adagg benchmark results',
    '',
    `- command: \`${meta.command}\``,
    `- date: ${meta.date} (${meta.mode}, took ${(meta.durationMs / 60_000).toFixed(1)} min)`,
    `- versions: ${Object.entries(meta.versions).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `- load average at the end: ${meta.loadavg.map((x) => x.toFixed(2)).join(' ')}`,
    `- config: ${Object.entries(meta.config).map(([k, v]) => `${k}=${String(v)}`).join(', ')}`,
    '',
    markdownTable(rows),
    '',
    ...extraSections,
    svg ? '![pipeline throughput and lag](throughput.svg)\n' : '',
    MEANINGS,
  ].join('\n');
  const files = [path.join(dir, 'latest.md'), path.join(dir, 'latest.json')];
  await writeFile(files[0]!, md);
  await writeFile(files[1]!, `${JSON.stringify({ ...meta, rows, data }, null, 2)}\n`);
  if (svg) {
    files.push(path.join(dir, 'throughput.svg'));
    await writeFile(files[2]!, svg);
  } else {
    await rm(path.join(dir, 'throughput.svg'), { force: true }); // never leave a chart of another run
  }
  return files;
}

export function profileSection(p: ProfileSummary): string {
  const lines = [
    `## CPU profile of the service (pipeline run 1, --cpu-prof)`,
    '',
    `The whole life of the service process (start, run, close wait, checks, stop): ${(p.totalMs / 1000).toFixed(1)} s, of which ` +
      `${(p.idleMs / 1000).toFixed(1)} s idle. Percentages are of the busy time. Line numbers of TypeScript files are those of tsx's output.`,
    '',
    '| self ms | % busy | function | where |',
    '|---:|---:|---|---|',
    ...p.rows.map((r) => `| ${r.ms.toFixed(0)} | ${r.pct.toFixed(1)} | ${r.fn} | ${r.where} |`),
    '',
    'Self time by file / package:',
    '',
    '| self ms | % busy | file |',
    '|---:|---:|---|',
    ...p.byFile.map((r) => `| ${r.ms.toFixed(0)} | ${r.pct.toFixed(1)} | ${r.where} |`),
    '',
  ];
  return lines.join('\n');
}
