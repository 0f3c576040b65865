-- Put one background run on its task key's arq queue, once.
--
-- KEYS[1]  arq:job:<job_id>           the job record (string)
-- KEYS[2]  <prefix>:queue:<task_key>  the task key's arq queue (sorted set)
-- KEYS[3]  arq:in-progress:<job_id>   set by arq while a worker runs the job
-- ARGV[1]  job id  <run_id>:<state_id>
-- ARGV[2]  JSON job payload, as arq stores it
-- ARGV[3]  due time, ms since the epoch (the queue score)
-- ARGV[4]  absolute expiry of the job record, ms since the epoch
-- ARGV[5]  wake channel
-- ARGV[6]  task key, published on the wake channel
--
-- Returns 1 when the queue entry was added, 0 when the job was already queued or is
-- being run, so enqueueing the same Scheduled state twice changes nothing.

if redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end

redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PXAT', ARGV[4])

local added = redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[1])
if added == 1 then
  redis.call('PUBLISH', ARGV[5], ARGV[6])
end
return added
