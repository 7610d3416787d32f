"""Run `traderai local` (what `make demo` runs) as a child process on free ports, for the e2e tests.

`start_stack` waits for its ready line and reads the development key it prints; `Stack.stop` is Ctrl-C;
`assert_stopped_cleanly` checks the exit code, the ports, and that no process is left.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from traderai.local.command import READY_LINE

CHROMIUM_PATH = "/usr/bin/chromium"  # Debian's package; Playwright never downloads a browser here
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STARTUP_TIMEOUT = 60.0  # ready in ~5 s alone; a loaded 2-core machine (CI beside other jobs) has taken 19 s
STOP_TIMEOUT = 45.0  # stops in ~5 s alone; far slower on a loaded shared machine
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Nothing listens there any more (a connect is refused)."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) != 0


@dataclass
class Stack:
    """A running `traderai local` child: its ports, its output so far, its development key."""

    process: subprocess.Popen[str]
    http_port: int
    ws_port: int
    aws_port: int
    lines: list[str] = field(default_factory=list)
    dev_key: str | None = None
    exit_code: int | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/prod"

    @property
    def ports(self) -> tuple[int, int, int]:
        return self.http_port, self.ws_port, self.aws_port

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        """Ctrl-C, as a user would; returns the exit code (idempotent)."""
        if self.exit_code is None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
            try:
                self.exit_code = self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"traderai local did not stop within {STOP_TIMEOUT}s:\n{self.output()}") from None
        return self.exit_code


def start_stack(*extra: str) -> Stack:
    """Start `traderai local` on free ports and wait until it says it is ready."""
    ports = free_port(), free_port(), free_port()
    command = [sys.executable, "-m", "traderai.cli", "local", "--http-port", str(ports[0]), "--ws-port",
               str(ports[1]), "--aws-port", str(ports[2]), *extra]
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTEST"))}
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=environment, bufsize=1)
    stack = Stack(process, *ports)
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            stack.lines.append(line.rstrip("\n"))
            found = re.search(r"dev key\s+(\S+)", line)
            if found:
                stack.dev_key = found.group(1)
            if READY_LINE in line:
                ready.set()
        ready.set()

    threading.Thread(target=read, name="stack-output", daemon=True).start()
    if not ready.wait(STARTUP_TIMEOUT) or process.poll() is not None:
        stack.stop() if process.poll() is None else None
        raise AssertionError(f"traderai local did not become ready in {STARTUP_TIMEOUT}s:\n{stack.output()}")
    return stack


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text` (Linux /proc): what would be left running."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def assert_stopped_cleanly(stack: Stack) -> None:
    code = stack.stop()
    assert code == 0, f"exit code {code}:\n{stack.output()}"
    deadline = time.monotonic() + 5
    while not all(port_is_free(p) for p in stack.ports) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(port_is_free(p) for p in stack.ports), f"a port is still open: {stack.ports}"
    assert any("stopped:" in line for line in stack.lines), stack.output()
    assert processes_mentioning(f"--aws-port {stack.aws_port}") == []
