-- Daily directional accuracy per symbol and model: is the model still right?
-- Each prediction is resolved by the close `horizon` candles later, read from the log itself: the
-- prediction of the same market whose candle_time = candle_time + horizon x timeframe (its `price`
-- is that candle's close). A prediction was right when side = 'long' and the later close is higher,
-- or side = 'short' and it is not (the training label: close[t + horizon] > close[t]).
-- Parameters: first day, last day, first day, last day ('YYYY-MM-DD'; closes are read one day past
-- the last day, so the day's last predictions resolve too).
WITH predicted AS (
    SELECT dt, exchange, symbol, timeframe, model_id, side, price, horizon,
           to_unixtime(from_iso8601_timestamp(candle_time)) AS candle_epoch,
           CAST(substr(timeframe, 1, length(timeframe) - 1) AS bigint)
               * CASE substr(timeframe, length(timeframe))
                     WHEN 'm' THEN 60 WHEN 'h' THEN 3600 WHEN 'd' THEN 86400 WHEN 'w' THEN 604800
                 END AS timeframe_seconds
    FROM predictions
    WHERE dt BETWEEN ? AND ?
),
realised AS (
    -- one close per market and candle, however many predictions logged it
    SELECT exchange, symbol, timeframe, to_unixtime(from_iso8601_timestamp(candle_time)) AS candle_epoch,
           min(price) AS realised_close
    FROM predictions
    WHERE dt BETWEEN ? AND date_format(date_add('day', 1, date(?)), '%Y-%m-%d')
    GROUP BY exchange, symbol, timeframe, candle_time
),
resolved AS (
    SELECT p.dt, p.symbol, p.model_id, p.side,
           CASE WHEN r.realised_close > p.price THEN 'long' ELSE 'short' END AS realised_side
    FROM predicted AS p
    JOIN realised AS r
      ON r.exchange = p.exchange AND r.symbol = p.symbol AND r.timeframe = p.timeframe
     AND r.candle_epoch = p.candle_epoch + p.horizon * p.timeframe_seconds
)
SELECT dt,
       symbol,
       model_id,
       count(*) AS resolved,
       sum(CASE WHEN side = realised_side THEN 1 ELSE 0 END) AS correct,
       round(avg(CASE WHEN side = realised_side THEN 1 ELSE 0 END), 4) AS accuracy,
       -- base rate: the accuracy of always answering 'long'
       round(avg(CASE WHEN realised_side = 'long' THEN 1 ELSE 0 END), 4) AS up_rate
FROM resolved
GROUP BY dt, symbol, model_id
ORDER BY dt, symbol, model_id
