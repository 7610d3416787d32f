"""Logger, Tracer and Metrics: created once here and imported everywhere (Powertools)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "traderai"
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace="TraderAI", service=SERVICE)
