-- One day of the decision log, every column but the partition key, for UNLOAD to Parquet
-- (CompactFunction writes it under decisions_parquet/dt=<day>/). Parameter: the day ('YYYY-MM-DD').
SELECT batch_id, model_id, symbol, candle_time, decided_at, accepted, reason, reasons, message, side,
       probability, confidence, entry_price, atr, gross_profit_pct, costs_pct, expected_net_profit_pct,
       sl_pct, signal_id, expected_value_pct, expected_r, outcome_probabilities, tradeable, paper_reasons
FROM decisions
WHERE dt = ?
ORDER BY symbol, candle_time
