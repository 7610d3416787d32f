-- Calibration by confidence bucket: when the model says 0.65, is it right 65% of the time?
-- Predictions are resolved exactly as in the daily accuracy query (the close `horizon` candles later,
-- from the log itself); buckets are 0.05 wide (0.50-0.55, ..., 0.95-1.00), over every market.
-- Parameters: first day, last day, first day, last day ('YYYY-MM-DD').
WITH predicted AS (
    SELECT exchange, symbol, timeframe, side, confidence, price, horizon,
           to_unixtime(from_iso8601_timestamp(candle_time)) AS candle_epoch,
           CAST(substr(timeframe, 1, length(timeframe) - 1) AS bigint)
               * CASE substr(timeframe, length(timeframe))
                     WHEN 'm' THEN 60 WHEN 'h' THEN 3600 WHEN 'd' THEN 86400 WHEN 'w' THEN 604800
                 END AS timeframe_seconds
    FROM predictions
    WHERE dt BETWEEN ? AND ?
),
realised AS (
    SELECT exchange, symbol, timeframe, to_unixtime(from_iso8601_timestamp(candle_time)) AS candle_epoch,
           min(price) AS realised_close
    FROM predictions
    WHERE dt BETWEEN ? AND date_format(date_add('day', 1, date(?)), '%Y-%m-%d')
    GROUP BY exchange, symbol, timeframe, candle_time
),
resolved AS (
    SELECT least(CAST(floor(p.confidence * 20) AS integer), 19) AS bucket,
           p.confidence,
           CASE WHEN p.side = (CASE WHEN r.realised_close > p.price THEN 'long' ELSE 'short' END)
                THEN 1 ELSE 0 END AS hit
    FROM predicted AS p
    JOIN realised AS r
      ON r.exchange = p.exchange AND r.symbol = p.symbol AND r.timeframe = p.timeframe
     AND r.candle_epoch = p.candle_epoch + p.horizon * p.timeframe_seconds
)
SELECT bucket * 0.05 AS confidence_from,
       (bucket + 1) * 0.05 AS confidence_to,
       count(*) AS resolved,
       round(avg(confidence), 4) AS mean_confidence,
       round(avg(hit), 4) AS hit_rate,
       -- > 0: the model is more confident than it is right (overconfident)
       round(avg(confidence) - avg(hit), 4) AS overconfidence
FROM resolved
GROUP BY bucket
ORDER BY bucket
