import { AdaggError, ErrorCode } from '../errors.ts';

/**
 * A bounded FIFO mailbox with back-pressure: `put` waits while the box is full, so a fast
 * producer (the JetStream consumer loop) slows to the actor's pace instead of growing memory.
 * One consumer takes messages one at a time with `take`.
 *
 * An optional priority lane (`priorityCapacity` > 0) holds messages that must not wait behind a
 * backlog (queries): `take` returns them before any ordinary message, and `offerPriority` refuses
 * with ADAGG_E_MAILBOX_FULL when the lane is full instead of waiting, so a flood of them meets a
 * bound and a coded refusal rather than growing memory.
 */
export class Mailbox<T> {
  private readonly items: T[] = [];
  private head = 0;
  private readonly priority: T[] = [];
  private closed = false;
  private readonly putWaiters: Array<() => void> = [];
  private takeWaiter: ((v: T | undefined) => void) | undefined;

  constructor(
    readonly capacity: number,
    readonly priorityCapacity = 0,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('mailbox capacity must be a positive integer');
    if (!Number.isInteger(priorityCapacity) || priorityCapacity < 0) throw new RangeError('mailbox priority capacity must be a non-negative integer');
  }

  /** Ordinary messages queued (the priority lane not included). */
  get size(): number {
    return this.items.length - this.head;
  }

  /** Messages queued in the priority lane. */
  get prioritySize(): number {
    return this.priority.length;
  }

  /**
   * Enqueues into the priority lane, taken before every ordinary message. Throws
   * ADAGG_E_MAILBOX_FULL when the lane holds `priorityCapacity` messages, ADAGG_E_MAILBOX_CLOSED
   * once closed.
   */
  offerPriority(item: T): void {
    if (this.closed) throw new AdaggError(ErrorCode.MailboxClosed, 'mailbox is closed');
    if (this.priority.length >= this.priorityCapacity) {
      throw new AdaggError(ErrorCode.MailboxFull, `mailbox priority lane is full (${this.priorityCapacity} queued)`);
    }
    this.deliver(item, this.priority);
  }

  /** Enqueues, waiting while full. Rejects with ADAGG_E_MAILBOX_CLOSED once closed. */
  async put(item: T): Promise<void> {
    while (this.size >= this.capacity && !this.closed) {
      await new Promise<void>((r) => this.putWaiters.push(r));
    }
    this.offerUnchecked(item);
  }

  /** Enqueues even past capacity: for rare control messages (ticks, flush, stop) that must not wait. */
  force(item: T): void {
    this.offerUnchecked(item);
  }

  private offerUnchecked(item: T): void {
    if (this.closed) throw new AdaggError(ErrorCode.MailboxClosed, 'mailbox is closed');
    this.deliver(item, this.items);
  }

  /** Hands the item to a waiting `take` (both lanes are then empty), else queues it in `lane`. */
  private deliver(item: T, lane: T[]): void {
    if (this.takeWaiter) {
      const w = this.takeWaiter;
      this.takeWaiter = undefined;
      w(item);
      return;
    }
    lane.push(item);
  }

  /** Next message, or undefined once closed and empty. */
  async take(): Promise<T | undefined> {
    if (this.priority.length > 0) return this.priority.shift();
    if (this.size > 0) {
      const item = this.items[this.head] as T;
      this.items[this.head] = undefined as T;
      this.head++;
      if (this.head > 1024 && this.head * 2 > this.items.length) {
        this.items.splice(0, this.head);
        this.head = 0;
      }
      this.putWaiters.shift()?.();
      return item;
    }
    if (this.closed) return undefined;
    return new Promise<T | undefined>((r) => (this.takeWaiter = r));
  }

  /** Stops accepting; pending messages can still be taken. Wakes every waiter. */
  close(): void {
    this.closed = true;
    for (const w of this.putWaiters.splice(0)) w();
    if (this.takeWaiter && this.size === 0 && this.priority.length === 0) {
      const w = this.takeWaiter;
      this.takeWaiter = undefined;
      w(undefined);
    }
  }

  /** Drops queued messages of both lanes, priority first (used when an actor fails and restarts from its snapshot). */
  clear(): T[] {
    const dropped = [...this.priority.splice(0), ...this.items.slice(this.head)];
    this.items.length = 0;
    this.head = 0;
    for (const w of this.putWaiters.splice(0)) w();
    return dropped;
  }
}
