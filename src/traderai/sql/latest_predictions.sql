-- The latest prediction per market, and what the signal step decided about it.
-- Parameters: since day, since day ('YYYY-MM-DD'; e.g. yesterday, so only recent partitions are read).
WITH ranked AS (
    SELECT p.*,
           row_number() OVER (PARTITION BY p.exchange, p.symbol, p.timeframe
                              ORDER BY p.candle_time DESC, p.predicted_at DESC) AS newest
    FROM predictions AS p
    WHERE p.dt >= ?
)
SELECT r.exchange,
       r.symbol,
       r.timeframe,
       r.model_id,
       r.candle_time,
       r.predicted_at,
       r.price,
       r.probability,
       r.confidence,
       r.side,
       r.drift_score,
       d.accepted,
       coalesce(d.reason, CASE WHEN d.accepted THEN 'accepted' END) AS outcome,
       d.signal_id
FROM ranked AS r
LEFT JOIN decisions AS d
  ON d.dt >= ? AND d.batch_id = r.batch_id AND d.symbol = r.symbol AND d.candle_time = r.candle_time
WHERE r.newest = 1
ORDER BY r.exchange, r.symbol, r.timeframe
