/**
 * A round's check: wait until the healed cluster has caught up with everything the producer got
 * acknowledged, then compare every ad × minute the gateway serves with the producer's truth.
 * Lost = clicks the truth has and the service does not; doubled = clicks the service counts beyond
 * the truth. Both are summed over cells, so a loss in one minute never hides a double in another.
 */
import type { Truth } from '../helpers/click-stream.ts';
import type { StatusShard } from '../helpers/cluster-procs.ts';
import { pace } from '../helpers/wait.ts';
import { NODE_IDS, type World } from './world.ts';

const MIN = 60_000;

export interface Comparison {
  /** Distinct clicks in the truth (each compared in its ad × minute cell). */
  checked: number;
  lost: number;
  doubled: number;
  /** Cells served as provisional (all should be final by now). */
  provisional: number;
  /** Cells that differ, for diagnostics (a few). */
  samples: string[];
  /** Queries that failed (non-200). */
  failures: string[];
}

/** Countries checked through the `country` filter on the hottest ads (the pre-aggregated cube). */
const FILTER_COUNTRIES = ['US', 'DE', 'FR', 'GB', 'JP'];
const FILTER_ADS = ['ad-0', 'ad-1', 'ad-2'];

/**
 * Reads every ad's minutes over the truth's range, and the hottest ads' minutes per country, and
 * compares them with the truth. Filtered cells count towards lost and doubled too (a click of
 * ad-0 in US lost from the cube is a wrong answer, even if the unfiltered count is right).
 */
export async function compareCounts(url: string, truth: Truth): Promise<Comparison> {
  const minutes = truth.minutes();
  const from = minutes[0]! * MIN;
  const to = (minutes.at(-1)! + 1) * MIN;
  const out: Comparison = { checked: truth.distinct, lost: 0, doubled: 0, provisional: 0, samples: [], failures: [] };
  const queries: Array<{ ad: string; country?: string }> = [...truth.byAd.keys()].map((ad) => ({ ad }));
  for (const ad of FILTER_ADS) for (const country of FILTER_COUNTRIES) if (truth.byAd.has(ad)) queries.push({ ad, country });
  const one = async ({ ad, country }: { ad: string; country?: string }): Promise<void> => {
    const q = `${url}/v1/ads/${encodeURIComponent(ad)}/aggregated_count?from=${from}&to=${to}${country ? `&country=${country}` : ''}`;
    const cell = country ? `${ad}/${country}` : ad;
    let body: { minutes?: Array<{ minute: string; count: number; final: boolean }> };
    try {
      const res = await fetch(q, { signal: AbortSignal.timeout(20_000) });
      body = (await res.json()) as typeof body;
      if (res.status !== 200 || !body.minutes) {
        out.failures.push(`${cell}: ${res.status} ${JSON.stringify(body).slice(0, 160)}`);
        return;
      }
    } catch (err) {
      out.failures.push(`${cell}: ${String(err)}`);
      return;
    }
    const served = new Map<number, number>();
    for (const row of body.minutes) {
      served.set(Date.parse(row.minute) / MIN, row.count);
      if (!row.final && row.count > 0) out.provisional++;
    }
    const want = (country ? truth.byAdCountry.get(`${ad}|${country}`) : truth.byAd.get(ad)) ?? new Map<number, number>();
    for (const m of new Set([...served.keys(), ...want.keys()])) {
      const s = served.get(m) ?? 0;
      const t = want.get(m) ?? 0;
      if (s === t) continue;
      if (s < t) out.lost += t - s;
      else out.doubled += s - t;
      if (out.samples.length < 8) out.samples.push(`${cell} @ ${new Date(m * MIN).toISOString()}: served ${s}, truth ${t}`);
    }
  };
  for (let i = 0; i < queries.length; i += 8) await Promise.all(queries.slice(i, i + 8).map(one));
  return out;
}

/** Why the cluster is not caught up yet, or null when it is. */
async function behind(w: World, lastMinute: number): Promise<string | null> {
  const down = w.down();
  if (down.length) return `down: ${down.join(', ')}`;
  // A restarted node must have rejoined (heartbeating), so the next round starts with three.
  const members = await w.cluster.placement.nodes(Date.now()).catch(() => null);
  if (!members) return 'membership unreadable (Redis?)';
  const missing = NODE_IDS.filter((id) => !members.some((m) => m.id === id && m.alive));
  if (missing.length) return `not heartbeating: ${missing.join(', ')}`;
  const table = await w.cluster.placement.read().catch(() => null);
  if (!table) return 'placement unreadable (Redis?)';
  const pending = table.entries.find((e) => e.owner === null || !(NODE_IDS as readonly string[]).includes(e.owner) || e.movingTo !== null);
  if (pending) return `shard ${pending.shard}: owner ${pending.owner}${pending.movingTo ? ` moving to ${pending.movingTo}` : ''}`;
  const status: StatusShard[] | null = await w.cluster.status();
  if (!status) return 'no /v1/status';
  const need = (lastMinute + 1) * MIN;
  for (const s of status) {
    if (s.state !== 'running') return `shard ${s.shard} ${s.state}`;
    if (s.watermark === null || Date.parse(s.watermark) < need) return `shard ${s.shard} watermark ${s.watermark} (minutes open)`;
    if (s.lag !== 0 || s.committed_seq < s.last_seq) return `shard ${s.shard} lag ${s.lag}, committed ${s.committed_seq} of ${s.last_seq}`;
  }
  const last = await w.streamLastSeqs().catch(() => null);
  if (!last) return 'stream unreadable';
  for (const s of status) {
    const want = last.get(s.shard) ?? 0;
    if (s.last_seq < want) return `shard ${s.shard} applied seq ${s.last_seq} of ${want} in the stream`;
  }
  return null;
}

export interface Converged {
  ok: boolean;
  ms: number;
  /** Processes that exited on their own while converging (restarted unless strict). */
  exits: string[];
  comparison: Comparison | undefined;
  /** The last reason it was not converged (on failure). */
  why: string;
}

/**
 * Polls until the cluster is caught up (every process up and every node heartbeating, placement
 * settled, every shard running with all of the truth's minutes closed, nothing unapplied or
 * uncommitted, the stream's last sequence applied) and the counts equal the truth; or until
 * `deadlineMs`. A process that exits on its own meanwhile is restarted and reported in `exits`, or
 * with `strictExits` fails the wait at once. `progress` is called about every 10 s while waiting.
 */
export async function converge(w: World, truth: Truth, opts: { deadlineMs: number; strictExits: boolean; progress: (why: string) => void }): Promise<Converged> {
  const { deadlineMs, strictExits, progress } = opts;
  const t0 = Date.now();
  const exits: string[] = [];
  const lastMinute = truth.minutes().at(-1)!;
  let why = 'not checked';
  let comparison: Comparison | undefined;
  let lastNote = t0;
  while (Date.now() - t0 < deadlineMs) {
    // Healing restarted everything a fault killed: a process down now exited on its own.
    if (w.down().some((d) => !d.startsWith('proxy'))) {
      if (strictExits) {
        exits.push(...w.down());
        why = `exited on its own: ${w.down().join(', ')}`;
        break;
      }
      exits.push(...(await w.restartExited()));
      await pace(1000); // a restart backoff, so a process that keeps exiting is not respawned in a tight loop
    }
    const b = await behind(w, lastMinute).catch((err: unknown) => String(err));
    if (b === null) {
      comparison = await compareCounts(w.cluster.url, truth);
      if (comparison.failures.length === 0 && comparison.lost === 0 && comparison.doubled === 0 && comparison.provisional === 0) {
        return { ok: true, ms: Date.now() - t0, exits, comparison, why: '' };
      }
      why = `counts differ: lost ${comparison.lost}, doubled ${comparison.doubled}, provisional ${comparison.provisional}, failed queries ${comparison.failures.length}`;
    } else why = b;
    if (Date.now() - lastNote > 10_000) {
      lastNote = Date.now();
      progress(`converging ${((Date.now() - t0) / 1000).toFixed(0)}s: ${why}`);
    }
    await pace(250); // the polling period
  }
  // The deadline passed: one last comparison for the report, whatever the cluster's state.
  comparison = await compareCounts(w.cluster.url, truth).catch(() => comparison);
  return { ok: false, ms: Date.now() - t0, exits, comparison, why: Date.now() - t0 >= deadlineMs ? `not converged within ${deadlineMs / 1000}s: ${why}` : why };
}
