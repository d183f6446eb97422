/**
 * The opening of every fenced Lua step in Redis (a shard's commit, an archiver's progress): a
 * resent step whose token is the stored one is acknowledged without running again (ioredis
 * resends a call in flight when its connection drops, and after a failover the new primary may
 * already hold it); a caller whose epoch is not the unit's current one is refused (`FENCED`).
 *
 * Layout it expects: KEYS[1] the unit's epoch key, KEYS[2] the hash holding the last `commit`
 * token; ARGV[1] the caller's epoch, ARGV[8] this step's token.
 */
export const FENCED_STEP_PRELUDE = `
if redis.call('HGET', KEYS[2], 'commit') == ARGV[8] then return 1 end
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then
  return redis.error_reply('FENCED epoch ' .. ARGV[1] .. ' is not the owner epoch ' .. tostring(cur))
end`;
