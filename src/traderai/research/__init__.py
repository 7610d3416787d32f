"""Model-quality research: walk-forward evaluation, labels, cost-aware backtest, reports (CLI only).

Everything here may import scikit-learn, pandas and matplotlib lazily: it runs from the `traderai`
CLI and the benchmarks, never inside a Lambda. The numpy-only pieces the predict path needs (the
drift PSI) live in `traderai.core.drift`.
"""
