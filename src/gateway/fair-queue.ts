/**
 * A FIFO queue per client, served round-robin across clients: the next item taken is the oldest
 * of the client after the one served last, so one client with a thousand items queued delays
 * another client's first item by at most one item per client ahead of it, never by the thousand.
 *
 * @example
 * const q = new FairQueue<string>();
 * q.push('a', 'a1'); q.push('a', 'a2'); q.push('b', 'b1');
 * q.shift(); // 'a1'
 * q.shift(); // 'b1'
 * q.shift(); // 'a2'
 */
export class FairQueue<T> {
  /** Each client's items, oldest first; a client is removed once it has none (Map order = turn order). */
  private readonly queues = new Map<string, T[]>();
  private count = 0;

  /** Items queued across every client. */
  get size(): number {
    return this.count;
  }

  /** Queues `item` at the end of `client`'s queue; a client new to the queue takes its turn after every queued one. */
  push(client: string, item: T): void {
    const q = this.queues.get(client);
    if (q) q.push(item);
    else this.queues.set(client, [item]);
    this.count++;
  }

  /** Takes the next client's oldest item; that client then goes to the back of the turn order. */
  shift(): T | undefined {
    const first = this.queues.entries().next();
    if (first.done === true) return undefined;
    const [client, q] = first.value;
    const item = q.shift()!;
    this.queues.delete(client);
    if (q.length > 0) this.queues.set(client, q);
    this.count--;
    return item;
  }

  /** Removes one item (e.g. a cancelled job); whether it was queued. */
  remove(client: string, item: T): boolean {
    const q = this.queues.get(client);
    const i = q?.indexOf(item) ?? -1;
    if (!q || i < 0) return false;
    q.splice(i, 1);
    if (q.length === 0) this.queues.delete(client);
    this.count--;
    return true;
  }

  /** Removes and returns every item, client by client. */
  drain(): T[] {
    const all = [...this.queues.values()].flat();
    this.queues.clear();
    this.count = 0;
    return all;
  }
}
