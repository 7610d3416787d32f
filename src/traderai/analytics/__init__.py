"""Athena over the prediction and decision logs: the named queries' SQL, the Glue schema, compaction.

The SQL lives in `traderai/sql/*.sql`; the template's `AWS::Athena::NamedQuery` resources are
generated from those files (`python -m traderai.analytics.template`), and the tests run the same
files, transpiled to DuckDB, over the objects the real pipeline writes.
"""
