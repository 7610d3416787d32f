-- Which filters block signals, counting EVERY failing filter of a rejection (not only the first):
-- "if the net-profit minimum were lower, would confidence still reject them?"
-- Parameters: first day, last day ('YYYY-MM-DD').
SELECT d.dt,
       d.symbol,
       f.failing_filter,
       count(*) AS rejections,
       sum(CASE WHEN cardinality(d.reasons) = 1 THEN 1 ELSE 0 END) AS only_failing_filter
FROM decisions AS d
CROSS JOIN UNNEST(d.reasons) AS f (failing_filter)
WHERE d.dt BETWEEN ? AND ?
GROUP BY d.dt, d.symbol, f.failing_filter
ORDER BY d.dt, d.symbol, rejections DESC, f.failing_filter
