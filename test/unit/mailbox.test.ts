import { describe, expect, it } from 'vitest';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import { Mailbox } from '../../src/runtime/mailbox.ts';

/** Lets every pending promise continuation run. */
const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

async function rejectionCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return e instanceof AdaggError ? e.code : `not an AdaggError: ${String(e)}`;
  }
  return 'resolved';
}

function throwCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return e instanceof AdaggError ? e.code : `not an AdaggError: ${String(e)}`;
  }
  return 'no error';
}

// A broken wake-up shows as a hang: fail fast instead of after the config's 120 s.
describe('Mailbox', { timeout: 5_000 }, () => {
  it('rejects a capacity that is not a positive integer', () => {
    for (const c of [0, -1, 1.5, NaN]) expect(() => new Mailbox<number>(c)).toThrow(RangeError);
  });

  it('delivers in FIFO order, also across internal compaction', async () => {
    const mb = new Mailbox<number>(10_000);
    let next = 0;
    let expected = 0;
    const got: number[] = [];
    // Interleave puts and takes so the head index passes the compaction threshold several times.
    // The box never fills, so every put goes straight in.
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 1500; i++) await mb.put(next++);
      expect(mb.size).toBe(next - got.length);
      for (let i = 0; i < 1200; i++) got.push((await mb.take())!);
    }
    while (mb.size > 0) got.push((await mb.take())!);
    expect(got.length).toBe(next);
    for (const v of got) expect(v).toBe(expected++);
  });

  it('a take waiting on an empty box receives the next item', async () => {
    const mb = new Mailbox<string>(2);
    const t = mb.take();
    await flush();
    await mb.put('a');
    expect(await t).toBe('a');
    expect(mb.size).toBe(0);
  });

  it('put waits while the box is full and resumes after a take', async () => {
    const mb = new Mailbox<string>(2);
    await mb.put('a');
    await mb.put('b');
    expect(mb.size).toBe(2);
    let done = false;
    const p = mb.put('c').then(() => (done = true));
    await flush();
    expect(done).toBe(false);
    expect(mb.size).toBe(2);

    expect(await mb.take()).toBe('a');
    await p;
    expect(done).toBe(true);
    expect(mb.size).toBe(2);
    expect(await mb.take()).toBe('b');
    expect(await mb.take()).toBe('c');
  });

  it('several waiting producers all get through, in order, as the consumer drains', async () => {
    const mb = new Mailbox<number>(1);
    await mb.put(0);
    const puts = [1, 2, 3, 4].map((n) => mb.put(n));
    await flush();
    expect(mb.size).toBe(1);
    const got: number[] = [];
    for (let i = 0; i < 5; i++) got.push((await mb.take())!);
    await Promise.all(puts);
    expect(got).toEqual([0, 1, 2, 3, 4]);
    expect(mb.size).toBe(0);
  });

  it('a full box takes nothing more: a waiting put goes in only after a take, behind the queued items', async () => {
    const mb = new Mailbox<number>(2);
    await mb.put(1);
    await mb.put(2);
    let done = false;
    const p = mb.put(3).then(() => (done = true));
    await flush();
    expect(done).toBe(false);
    expect(mb.size).toBe(2);
    expect(await mb.take()).toBe(1);
    await p;
    expect(mb.size).toBe(2);
    expect(await mb.take()).toBe(2);
    expect(await mb.take()).toBe(3);
  });

  it('force enqueues past capacity; put then waits until the box is below capacity again', async () => {
    const mb = new Mailbox<string>(1);
    mb.force('a');
    mb.force('b');
    mb.force('c');
    expect(mb.size).toBe(3);
    let done = false;
    const p = mb.put('d').then(() => (done = true));
    await flush();
    expect(done).toBe(false); // 3 >= 1
    expect(await mb.take()).toBe('a');
    await flush();
    expect(done).toBe(false); // still 2 >= 1
    expect(await mb.take()).toBe('b');
    await flush();
    expect(done).toBe(false);
    expect(await mb.take()).toBe('c');
    await p;
    expect(await mb.take()).toBe('d');
  });

  it('close: pending items drain, then take returns undefined; puts reject with ADAGG_E_MAILBOX_CLOSED', async () => {
    const mb = new Mailbox<string>(5);
    await mb.put('a');
    await mb.put('b');
    mb.close();
    expect(await rejectionCode(mb.put('c'))).toBe(ErrorCode.MailboxClosed);
    expect(throwCode(() => mb.force('d'))).toBe(ErrorCode.MailboxClosed);
    // Closed is reported before full: this box has no priority lane at all.
    expect(throwCode(() => mb.offerPriority('e'))).toBe(ErrorCode.MailboxClosed);
    expect(await mb.take()).toBe('a');
    expect(await mb.take()).toBe('b');
    expect(await mb.take()).toBeUndefined();
    expect(await mb.take()).toBeUndefined();
  });

  it('close wakes a waiting taker with undefined and a waiting producer with a rejection', async () => {
    const empty = new Mailbox<string>(1);
    const t = empty.take();
    await flush();
    empty.close();
    expect(await t).toBeUndefined();

    const full = new Mailbox<string>(1);
    await full.put('a');
    const p = full.put('b');
    await flush();
    full.close();
    expect(await rejectionCode(p)).toBe(ErrorCode.MailboxClosed);
    expect(await full.take()).toBe('a');
    expect(await full.take()).toBeUndefined();
  });

  it('clear returns the dropped items in order and frees the space', async () => {
    const mb = new Mailbox<number>(3);
    for (const n of [1, 2, 3]) await mb.put(n);
    expect(await mb.take()).toBe(1);
    mb.force(4);
    expect(mb.clear()).toEqual([2, 3, 4]);
    expect(mb.size).toBe(0);
    expect(mb.clear()).toEqual([]);
    await mb.put(5);
    expect(mb.size).toBe(1);
    expect(await mb.take()).toBe(5);
  });

  it('clear wakes a waiting producer, whose item then goes in', async () => {
    const mb = new Mailbox<number>(1);
    await mb.put(1);
    let done = false;
    const p = mb.put(2).then(() => (done = true));
    await flush();
    expect(done).toBe(false);
    expect(mb.clear()).toEqual([1]);
    await p;
    expect(await mb.take()).toBe(2);
  });
});

describe('Mailbox priority lane', { timeout: 5_000 }, () => {
  it('takes priority messages before queued ordinary ones, in their own order', async () => {
    const mb = new Mailbox<string>(4, 2);
    await mb.put('a');
    await mb.put('b');
    mb.offerPriority('q1');
    mb.offerPriority('q2');
    expect(mb.size).toBe(2);
    expect(mb.prioritySize).toBe(2);
    expect([await mb.take(), await mb.take(), await mb.take(), await mb.take()]).toEqual(['q1', 'q2', 'a', 'b']);
  });

  it('refuses a priority message past its capacity with MAILBOX_FULL, whatever the ordinary lane holds', async () => {
    const mb = new Mailbox<string>(1, 1);
    mb.offerPriority('q1');
    expect(throwCode(() => mb.offerPriority('q2'))).toBe(ErrorCode.MailboxFull);
    expect(await mb.take()).toBe('q1');
    mb.offerPriority('q3');
    expect(await mb.take()).toBe('q3');
    // No lane at all by default: every priority message is refused.
    expect(throwCode(() => new Mailbox<string>(1).offerPriority('q'))).toBe(ErrorCode.MailboxFull);
  });

  it('wakes a waiting consumer, drains on close, and clear drops both lanes', async () => {
    const mb = new Mailbox<string>(2, 2);
    const waiting = mb.take();
    mb.offerPriority('q');
    expect(await waiting).toBe('q');
    mb.offerPriority('p');
    mb.close();
    expect(throwCode(() => mb.offerPriority('late'))).toBe(ErrorCode.MailboxClosed);
    expect(await mb.take()).toBe('p');
    expect(await mb.take()).toBeUndefined();
    const other = new Mailbox<string>(2, 2);
    await other.put('a');
    other.offerPriority('q');
    expect(other.clear()).toEqual(['q', 'a']);
    expect(other.prioritySize).toBe(0);
  });
});
