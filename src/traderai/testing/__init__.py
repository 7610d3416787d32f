"""Test doubles shared by the tests, the benchmark and the local demo (no network, no AWS)."""
