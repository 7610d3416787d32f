"""local.sandboxes: each invocation in a separate warm worker process, as Lambda runs concurrent invocations."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from traderai.local.sandboxes import InvocationError, Sandboxes

HANDLER = '''
import os, time
IMPORTED_AT = time.time()

def handler(event, context):
    if event.get("fail"):
        raise KeyError("a bug")
    time.sleep(event.get("sleep", 0))
    if "barrier" in event:  # a barrier across sandboxes: wait until `parties` sandboxes are in a call at once
        directory, parties = event["barrier"]
        open(os.path.join(directory, str(os.getpid())), "w").close()
        deadline = time.time() + 30
        while len(os.listdir(directory)) < parties:
            if time.time() > deadline:
                raise TimeoutError(f"{len(os.listdir(directory))} of {parties} sandboxes in a call at once")
            time.sleep(0.01)
    return {"pid": os.getpid(), "imported_at": IMPORTED_AT, "env": os.environ.get("WHO"), "event": event}
'''


@pytest.fixture
def functions(tmp_path: Path) -> Path:
    (tmp_path / "echo").mkdir()
    (tmp_path / "echo" / "app.py").write_text(HANDLER)
    return tmp_path


def test_invocations_run_in_warm_worker_processes_reused_across_calls(functions: Path) -> None:
    with Sandboxes({"Echo": "echo"}, {"Echo": {"WHO": "echo-env"}}, per_function=2, functions_dir=functions) as boxes:
        first = boxes.invoke("Echo", {"n": 1})
        second = boxes.invoke("Echo", {"n": 2})
        assert first["pid"] != os.getpid() and first["env"] == "echo-env" and second["event"] == {"n": 2}
        assert (second["pid"], second["imported_at"]) == (first["pid"], first["imported_at"])  # warm: imported once
        assert boxes.counts() == {"Echo": 1}


def test_concurrent_invocations_scale_out_to_separate_processes_up_to_the_limit(functions: Path) -> None:
    with Sandboxes({"Echo": "echo"}, {"Echo": {}}, per_function=3, functions_dir=functions) as boxes:
        replies: list[dict] = []
        threads = [threading.Thread(target=lambda: replies.append(boxes.invoke("Echo", {"sleep": 0.5})))
                   for _ in range(5)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(replies) == 5 and len({r["pid"] for r in replies}) == 3 == boxes.counts()["Echo"]
        assert time.perf_counter() - started >= 1.0  # 5 calls of 0.5 s on 3 sandboxes: two rounds


def test_started_sandboxes_wait_idle_and_serve_without_a_cold_start(functions: Path, tmp_path: Path) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    with Sandboxes({"Echo": "echo"}, {"Echo": {}}, per_function=3, functions_dir=functions) as boxes:
        boxes.start("Echo", 5)  # capped at per_function
        assert boxes.counts() == {"Echo": 3}
        called = time.time()
        replies: list[dict] = []
        # each call holds its sandbox until three sandboxes are in a call at once (else the barrier times out
        # and the call fails), so the calls overlap however slowly the threads are scheduled
        threads = [threading.Thread(target=lambda: replies.append(boxes.invoke("Echo", {"barrier": [str(barrier), 3]})))
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # three concurrent calls met the three started sandboxes, all imported before the calls
        assert len(replies) == 3 and len({r["pid"] for r in replies}) == 3
        assert all(r["imported_at"] < called for r in replies)
        boxes.start("Echo", 2)  # already there: nothing more started
        assert boxes.counts() == {"Echo": 3}


def test_a_handler_error_is_the_invocations_error_and_the_sandbox_stays(functions: Path) -> None:
    with Sandboxes({"Echo": "echo"}, {"Echo": {}}, per_function=1, functions_dir=functions) as boxes:
        with pytest.raises(InvocationError, match="KeyError: 'a bug'"):
            boxes.invoke("Echo", {"fail": True})
        assert boxes.invoke("Echo", {})["event"] == {}  # the same sandbox serves the next one
