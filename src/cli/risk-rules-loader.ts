import type { CompiledOptions } from '../options.ts';
import type { RiskRuleSet } from '../model/risk-rules.ts';
import type { Logger } from '../runtime/logger.ts';
import { connectNats } from '../runtime/nats.ts';
import { openRedis } from '../runtime/redis-connect.ts';
import { readRiskRulesFile } from '../runtime/risk-rules-file.ts';
import { publishRiskRules } from '../runtime/risk-rules-publisher.ts';
import { ensureStreams } from '../runtime/streams.ts';
import { topology } from '../runtime/topology.ts';

/** What publishing needs: the servers (credentials and TLS included) and the stream layout. */
export type RiskRulesTarget = CompiledOptions & { natsUrl: string; redisUrl: string };

/**
 * ADAGG_RISK_RULES in the composition root (`adagg start` and `adagg node`), in three steps:
 * 1. {@link riskRulesOptions} before anything starts: hot-ad splitting off when rules are set;
 * 2. {@link readRiskRules} first: read and validate the file (a bad one fails the start with
 *    ADAGG_E_RISK_RULES before anything serves);
 * 3. {@link startRiskRules} before the node's actors run and the gateway takes clicks: publish the
 *    rules into every shard subject unless they are already in effect, and install the SIGHUP
 *    reload (read, validate, publish; a bad file is logged and the rules in effect stay).
 */
export function riskRulesOptions<O extends Pick<CompiledOptions, 'riskRules' | 'hotChildren'>>(o: O, log: Logger): O {
  if (o.riskRules === undefined || o.hotChildren === 0) return o;
  // A frequency group (window, key with ad_id) must see every click of its ad in one actor; a
  // split ad spreads its clicks over child actors.
  log.info({ riskRules: o.riskRules, hotChildren: 0, configured: o.hotChildren }, 'ADAGG_RISK_RULES is set: hot-ad splitting is off');
  return { ...o, hotChildren: 0 };
}

/** Reads and validates the rules file; undefined without ADAGG_RISK_RULES. Rejects with ADAGG_E_RISK_RULES. */
export async function readRiskRules(o: Pick<CompiledOptions, 'riskRules'>): Promise<RiskRuleSet | undefined> {
  return o.riskRules === undefined ? undefined : readRiskRulesFile(o.riskRules);
}

/**
 * Puts a validated rule set into effect (src/runtime/risk-rules-publisher.ts) over connections of
 * its own. Creates the streams first if this is the deployment's first start. Resolves to whether
 * it published (false: that version is already in effect).
 */
export async function putRiskRulesInEffect(o: RiskRulesTarget, set: RiskRuleSet, log: Logger): Promise<boolean> {
  const topo = topology(o.prefix);
  const nc = await connectNats(o, 'adagg-risk-rules');
  try {
    const redis = await openRedis(o, 'gateway', log);
    try {
      await ensureStreams(nc, topo, o);
      return await publishRiskRules({ nc, redis, topology: topo, shards: o.shards, prefix: o.prefix, set, log });
    } finally {
      redis.disconnect();
    }
  } finally {
    await nc.close().catch(() => undefined);
  }
}

/**
 * Startup, once the servers are reachable and before the node's actors run or the gateway takes
 * clicks: publishes the rules {@link readRiskRules} validated (unless already in effect), then
 * installs the SIGHUP reload. Nothing without ADAGG_RISK_RULES.
 */
export async function startRiskRules(o: RiskRulesTarget, set: RiskRuleSet | undefined, log: Logger): Promise<void> {
  if (set === undefined || o.riskRules === undefined) return;
  const published = await putRiskRulesInEffect(o, set, log);
  log.info({ file: o.riskRules, version: set.version, rules: set.rules.map((r) => r.name), published, subjects: published ? o.shards : 0 }, 'risk rules loaded');
  reloadRiskRulesOnHangup(o, log);
}

/**
 * One reload: re-read, validate, publish, log. Never rejects: a bad file or an unreachable server
 * is logged and the rules in effect stay.
 */
export async function reloadRiskRules(o: RiskRulesTarget, log: Logger): Promise<boolean> {
  try {
    const set = await readRiskRules(o);
    if (set === undefined) return false;
    const published = await putRiskRulesInEffect(o, set, log);
    log.info({ file: o.riskRules, version: set.version, rules: set.rules.length, published, subjects: published ? o.shards : 0 }, 'risk rules reloaded');
    return published;
  } catch (err) {
    log.error({ err, file: o.riskRules }, 'risk rules not reloaded: the rules in effect stay');
    return false;
  }
}

/**
 * SIGHUP re-reads ADAGG_RISK_RULES when it is set (reloads run one at a time, in signal order).
 * Without it nothing is installed, so a hangup keeps its default meaning (or the tokens reload's).
 */
export function reloadRiskRulesOnHangup(o: RiskRulesTarget, log: Logger): void {
  if (o.riskRules === undefined) return;
  let chain: Promise<unknown> = Promise.resolve();
  process.on('SIGHUP', () => {
    log.info({ file: o.riskRules }, 'SIGHUP: reloading risk rules');
    chain = chain.then(() => reloadRiskRules(o, log));
  });
}
