-- One day of the prediction log, every column but the partition key, for UNLOAD to Parquet
-- (CompactFunction writes it under predictions_parquet/dt=<day>/). Parameter: the day ('YYYY-MM-DD').
SELECT batch_id, model_id, exchange, symbol, timeframe, candle_time, predicted_at, price, atr,
       probability, confidence, side, horizon, quote_volume_24h, amount_step, price_step, drift_score,
       features, outcome_probabilities, expiry_exit_atr, bracket, edge_evidence
FROM predictions
WHERE dt = ?
ORDER BY symbol, candle_time
