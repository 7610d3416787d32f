-- How late does the tick start after its schedule's mark? Per day: the offset from the mark (the tick in
-- batch_id, `<model_id>_YYYYMMDD_HHMMSS`) to the predict invocation's clock at its start (predicted_at),
-- one value per invocation (a shard of a sharded tick), p50/p95/max in seconds. This is the firing offset
-- the local freshness figure can only assume.
-- Parameters: first day, last day ('YYYY-MM-DD').
WITH starts AS (
    SELECT DISTINCT dt,
           substr(batch_id, length(batch_id) - 14) AS tick,
           predicted_at
    FROM predictions
    WHERE dt BETWEEN ? AND ?
),
offsets AS (
    SELECT dt,
           to_unixtime(from_iso8601_timestamp(predicted_at))
               - to_unixtime(date_parse(tick, '%Y%m%d_%H%i%s')) AS offset_s
    FROM starts
)
SELECT dt,
       count(*) AS invocations,
       round(approx_percentile(offset_s, 0.5), 1) AS offset_p50_s,
       round(approx_percentile(offset_s, 0.95), 1) AS offset_p95_s,
       round(max(offset_s), 1) AS offset_max_s
FROM offsets
GROUP BY dt
ORDER BY dt
