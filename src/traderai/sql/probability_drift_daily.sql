-- Is the probability distribution drifting? Per day, market and model: quantiles, mean, spread, the
-- share of 'long' calls, mean confidence and the mean feature-drift score (null until it is logged).
-- Parameters: first day, last day ('YYYY-MM-DD').
SELECT dt,
       symbol,
       model_id,
       count(*) AS predictions,
       round(avg(probability), 4) AS mean_probability,
       round(stddev_samp(probability), 4) AS stddev_probability,
       round(approx_percentile(probability, 0.1), 4) AS p10,
       round(approx_percentile(probability, 0.5), 4) AS p50,
       round(approx_percentile(probability, 0.9), 4) AS p90,
       round(avg(CASE WHEN side = 'long' THEN 1 ELSE 0 END), 4) AS long_share,
       round(avg(confidence), 4) AS mean_confidence,
       round(avg(drift_score), 4) AS mean_drift_score
FROM predictions
WHERE dt BETWEEN ? AND ?
GROUP BY dt, symbol, model_id
ORDER BY dt, symbol, model_id
