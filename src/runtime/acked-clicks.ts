/** Most [acked time, clicks] entries kept between two commits (the commit event carries them). */
const ACKED_MAX = 256;

/**
 * When the clicks a shard actor counted since its last commit were acknowledged by JetStream
 * (their messages' store times), for the acked → committed latency of the commit that makes them
 * durable. Bounded: past ACKED_MAX entries the clicks join the newest entry (its time is the
 * closest), so a long stretch without a commit costs no more memory or event size.
 */
export class AckedClicks {
  private entries: Array<[number, number]> = [];

  /** `clicks` counted from a message JetStream stored at `ackedAt` (epoch ms). */
  add(ackedAt: number, clicks: number): void {
    const last = this.entries.at(-1);
    if (last && (last[0] === ackedAt || this.entries.length >= ACKED_MAX)) last[1] += clicks;
    else this.entries.push([ackedAt, clicks]);
  }

  /** Everything noted since the previous call (a commit took it). */
  take(): Array<[number, number]> {
    const out = this.entries;
    this.entries = [];
    return out;
  }
}
