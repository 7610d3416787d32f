-- Why no signals? Every decision of the signal step per day and market, by outcome: 'accepted' or the
-- first filter that rejected it (low_net_profit, low_confidence, low_liquidity, duplicate_active, ...).
-- Parameters: first day, last day ('YYYY-MM-DD').
SELECT dt,
       symbol,
       coalesce(reason, 'accepted') AS outcome,
       count(*) AS decisions,
       round(100 * CAST(count(*) AS double) / sum(count(*)) OVER (PARTITION BY dt, symbol), 2) AS pct_of_day,
       round(avg(expected_net_profit_pct), 4) AS mean_expected_net_profit_pct,
       round(avg(confidence), 4) AS mean_confidence
FROM decisions
WHERE dt BETWEEN ? AND ?
GROUP BY dt, symbol, coalesce(reason, 'accepted')
ORDER BY dt, symbol, decisions DESC, outcome
