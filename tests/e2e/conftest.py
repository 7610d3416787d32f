"""Fixtures of the e2e tests: `traderai local` in a child process on free ports, and headless Chromium.

The module's stack is the very command `make demo` runs; on teardown it is stopped with SIGINT (Ctrl-C)
and must exit 0 with every port free and no process left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from local_stack import CHROMIUM_ARGS, CHROMIUM_PATH, Stack, assert_stopped_cleanly, start_stack


@pytest.fixture
def start_local() -> Iterator[Callable[..., Stack]]:
    """Start extra stacks in a test; any still running at the end is stopped."""
    started: list[Stack] = []

    def start(*extra: str) -> Stack:
        started.append(start_stack(*extra))
        return started[-1]

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def chromium() -> Iterator[Any]:
    """Headless Chromium (Debian's package) driven by Playwright; fails, never skips, when it is missing."""
    if not Path(CHROMIUM_PATH).is_file():
        pytest.fail(f"{CHROMIUM_PATH} not found: the browser test needs Debian's chromium package "
                    "(`make browser`, i.e. `apt-get install -y chromium`)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """One replay from 2025-04-07 00:00 UTC at 900x (three 5-minute ticks a second) for the module.

    With MIN_CONFIDENCE 0.5 for this test stack only: the shipped models, calibrated on steps of >= 1,000
    rows, are never 55 % confident on the bundled candles (docs/demo.md), and these tests exercise the
    pipeline's plumbing (a signal stored, pushed, served), not the model. Every other filter is the seed's."""
    running = start_stack("--start", "2025-04-07T00:00:00Z", "--speed", "900", "--param", "MinConfidence=0.5")
    try:
        yield running
    finally:
        assert_stopped_cleanly(running)
