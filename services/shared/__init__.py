"""State shared by the bot's replicas, on Redis (`REDIS_URL`): the building blocks.

- `guard.RedisGuard`: every call with a short timeout; while Redis is unreachable the callers
  fall back to their local state (one log line when it goes away, one when it is back).
- `gcra.GcraLimiter`: rate limits as GCRA in one Lua script, atomic across replicas; a call
  books the next start for one or several `rate.Rate`s at once and says how long to wait.
- `semaphore.RedisSemaphore`: at most N holders across replicas, each an expiring member of a
  sorted set, refreshed while held, so a holder whose process died frees its place.
- `stop.StopRelay`: a Stop pressed on one replica reaches the replica streaming that answer.

Nothing is imported here: `rate` is plain data that the local pacer uses too, and a bot
without REDIS_URL never loads redis-py (the other modules import it).
"""
