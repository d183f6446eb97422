import type { NatsConnection } from '@nats-io/transport-node';
import type { Redis } from 'ioredis';
import { encodeRiskMessage } from '../model/risk-messages.ts';
import type { RiskRule, RiskRuleSet } from '../model/risk-rules.ts';
import type { Logger } from './logger.ts';
import { ClickProducer } from './producer.ts';
import { RedisKeys } from './redis-keys.ts';
import type { Topology } from './topology.ts';

/**
 * Puts a rule set into effect: a `rules` risk message into every shard subject of the clicks
 * stream, so each shard switches at a recorded stream sequence (a replay before it uses the old
 * rules), then the record the gateway reads (`<prefix>:risk:rules` field `current`, and every rule
 * name in `<prefix>:risk:names`). The record is written only once every shard subject has
 * acknowledged, so a crash in between publishes again at the next start or reload.
 *
 * Message ids are `risk-rules-<version>-<gen>-<n>`, `gen` being one more than the record's: nodes
 * that publish the same change at once (each `adagg node` publishes at its start) share ids and
 * JetStream keeps one copy, while going back to an earlier version (gen differs) is not mistaken
 * for a duplicate within the stream's duplicate window.
 *
 * @example
 * await publishRiskRules({ nc, redis, topology: topology('adagg'), shards: 16, prefix: 'adagg', set: await readRiskRulesFile(path), log });
 */
export interface PublishRiskRulesArgs {
  nc: NatsConnection;
  redis: Redis;
  topology: Topology;
  shards: number;
  prefix: string;
  set: RiskRuleSet;
  log: Logger;
  /** Epoch ms for the record's `at`. @default Date.now */
  now?: () => number;
}

/** The record of the rules in effect. */
export interface PublishedRiskRules {
  version: string;
  rules: RiskRule[];
  /** Epoch ms when they were published. */
  at: number;
  /** Count of publications so far (see the message ids). */
  gen: number;
}

/** Publishes the rule set unless it is already the one in effect; resolves to whether it published. */
export async function publishRiskRules(a: PublishRiskRulesArgs): Promise<boolean> {
  const keys = new RedisKeys(a.prefix);
  const current = await readRecord(a.redis, a.prefix);
  if (current?.version === a.set.version) return false;
  const gen = (current?.gen ?? 0) + 1;
  const data = encodeRiskMessage({ kind: 'rules', version: a.set.version, rules: a.set.rules });
  const producer = new ClickProducer(a.nc, a.topology, { shards: a.shards });
  const acks = await Promise.all(
    Array.from({ length: a.shards }, (_, n) => producer.send(a.topology.clickSubject(n), data, `risk-rules-${a.set.version}-${gen}-${n}`)),
  );
  const record: PublishedRiskRules = { version: a.set.version, rules: a.set.rules, at: (a.now ?? Date.now)(), gen };
  const m = a.redis.multi().hset(keys.riskRules(), 'current', JSON.stringify(record));
  if (a.set.rules.length > 0) m.sadd(keys.riskRuleNames(), ...a.set.rules.map((r) => r.name));
  await m.exec();
  a.log.info(
    { version: a.set.version, previous: current?.version ?? null, rules: a.set.rules.length, subjects: a.shards, duplicates: acks.filter((k) => k.duplicate).length },
    'risk rules published',
  );
  return true;
}

/** The rules in effect as last published, or null when none were (or the record is unreadable). */
export async function readPublishedRules(redis: Redis, prefix: string): Promise<{ version: string; rules: RiskRule[] } | null> {
  const r = await readRecord(redis, prefix);
  return r === null ? null : { version: r.version, rules: r.rules };
}

/** Every rule name ever published, sorted. */
export async function knownRuleNames(redis: Redis, prefix: string): Promise<string[]> {
  return (await redis.smembers(new RedisKeys(prefix).riskRuleNames())).sort();
}

async function readRecord(redis: Redis, prefix: string): Promise<PublishedRiskRules | null> {
  const raw = await redis.hget(new RedisKeys(prefix).riskRules(), 'current');
  if (raw === null) return null;
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    return null;
  }
  if (typeof doc !== 'object' || doc === null) return null;
  const d = doc as Record<string, unknown>;
  if (typeof d.version !== 'string' || !Array.isArray(d.rules)) return null;
  return {
    version: d.version,
    rules: d.rules as RiskRule[],
    at: typeof d.at === 'number' ? d.at : 0,
    gen: typeof d.gen === 'number' && Number.isSafeInteger(d.gen) ? d.gen : 0,
  };
}
