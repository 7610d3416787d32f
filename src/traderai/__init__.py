"""TraderAI: every 5 minutes a prediction per market, logged for Athena; the good ones become signals."""

__version__ = "0.1.0"
