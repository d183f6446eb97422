/** `adagg drain NODE [--wait] [--undo]`: move every shard off a node (for maintenance or removal). */
import { parseArgs } from 'node:util';
import { findNode, ownedCounts, positionals, timeoutMs, waitUntil, withOps } from './context.ts';
import { formatDuration } from './table.ts';

export async function drainCommand(args: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({
    args,
    allowPositionals: true,
    options: { wait: { type: 'boolean' }, undo: { type: 'boolean' }, timeout: { type: 'string' }, json: { type: 'boolean' } },
  });
  const [id] = positionals(rest, ['NODE']) as [string];
  const waitMs = timeoutMs(values.timeout, 120);
  return withOps(async (ctx) => {
    const now = Date.now();
    const [table, nodes] = await Promise.all([ctx.store.read(), ctx.store.nodes(now)]);
    const owned = ownedCounts(table).get(id) ?? 0;
    if (values.undo) {
      // Also clears a drain mark of a node that has left meanwhile.
      const n = nodes.find((x) => x.id === id);
      await ctx.store.setDraining(id, false, now);
      if (values.json) console.log(JSON.stringify({ node: id, draining: false, shards: owned }));
      else console.log(n?.draining ? `${id} is no longer draining; the controller may give it shards again` : `${id} was not draining`);
      return 0;
    }
    const node = findNode(id, nodes);
    await ctx.store.setDraining(id, true, now);
    const others = nodes.filter((n) => n.id !== id && n.alive && !n.draining);
    const say = (s: string): void => {
      if (!values.json) console.log(s);
    };
    say(
      `${id} is draining${node.draining ? ' (already was)' : ''}: the controller moves its ${owned} shard${owned === 1 ? '' : 's'} off, ` +
        `at most ${ctx.planner.maxMovesPerRound} handoffs at a time`,
    );
    if (others.length === 0 && owned > 0) {
      process.stderr.write(`adagg: warning: no other live, non-draining node can take ${id}'s shards; they stay until one joins\n`);
    }
    if (table.suspended) {
      process.stderr.write(`adagg: warning: rebalancing is suspended, so the controller moves nothing until 'adagg rebalance resume'\n`);
    }
    let ms: number | undefined;
    if (values.wait) {
      const t0 = Date.now();
      await waitUntil(
        async () => ((ownedCounts(await ctx.store.read()).get(id) ?? 0) === 0 ? true : undefined),
        waitMs,
        async () => `${id} still owns ${ownedCounts(await ctx.store.read()).get(id) ?? 0} shard(s)`,
        100,
      );
      ms = Date.now() - t0;
      say(`${id} drained: ${owned} shard${owned === 1 ? '' : 's'} moved off in ${formatDuration(ms)}; it can be stopped now (undo: adagg drain ${id} --undo)`);
    }
    if (values.json) console.log(JSON.stringify({ node: id, draining: true, shards: owned, ...(ms === undefined ? {} : { ms }) }));
    return 0;
  });
}
