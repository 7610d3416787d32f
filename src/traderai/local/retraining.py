"""The candle archive and the retraining state machine, locally, on the replay clock.

`StateMachineRunner` runs the template's own `RetrainStateMachine` definition (Task, Choice, Fail; Catch
with a ResultPath; `lambda:invoke` and `sns:publish` integrations) with the real handlers, so the local run
follows the deployed wiring; Retry is not replayed (a local failure is reported at once). `RetrainLoop`
fires ArchiveFunction at every replayed day's 00:10 and, after it, the state machine once `every_days`
replayed days have passed since the start or the previous retraining (a week by default: the served models
stay the shipped ones for the first replayed week, as on a fresh stack).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from traderai.contracts import iso_utc
from traderai.local.scheduler import ReplayClock, scheduled_event

Invoke = Callable[[str, Any], Any]
ARCHIVE_AT = timedelta(minutes=10)  # ArchiveFunction's cron(10 0 * * ? *)


class UnsupportedDefinition(ValueError):
    """The definition uses a state or field this local runner does not implement."""


def _path(document: Any, path: str) -> Any:
    """A JSONPath of the simple kind the definition uses: `$`, `$.a.b`, `$.a[0]`; KeyError if absent."""
    if path == "$":
        return document
    value = document
    for part in path[2:].replace("[", ".[").split("."):
        value = value[int(part[1:-1])] if part.startswith("[") else value[part]
    return value


def _present(document: Any, path: str) -> bool:
    try:
        _path(document, path)
    except (KeyError, IndexError, TypeError):
        return False
    return True


@dataclass
class Execution:
    """One local execution: the states visited, the notifications published, the final output or error."""

    started: datetime
    states: list[str] = field(default_factory=list)
    notifications: list[dict[str, str]] = field(default_factory=list)
    output: Any = None
    error: dict[str, str] | None = None


class StateMachineRunner:
    """Runs an Amazon States Language definition from the template with local functions."""

    def __init__(self, template: Mapping[str, Any], logical_id: str, invoke: Invoke) -> None:
        properties = template["Resources"][logical_id]["Properties"]
        self.definition = properties["Definition"]
        self._functions = {f"${{{name}}}": value["Fn::GetAtt"][0]
                           for name, value in properties.get("DefinitionSubstitutions", {}).items()
                           if isinstance(value, dict) and "Fn::GetAtt" in value}
        self._invoke = invoke

    def run(self, payload: Any, started: datetime) -> Execution:
        execution = Execution(started)
        name, document = self.definition["StartAt"], payload
        for _ in range(100):  # a definition with a loop would never end locally
            state = self.definition["States"][name]
            execution.states.append(name)
            kind = state["Type"]
            if kind == "Fail":
                execution.error = execution.error or {"Error": state.get("Error", ""), "Cause": state.get("Cause", "")}
                return execution
            if kind == "Succeed":
                execution.output = document
                return execution
            if kind == "Choice":
                name = next((c["Next"] for c in state["Choices"] if self._matches(c, document)), state.get("Default"))
                if name is None:
                    raise UnsupportedDefinition("Choice without a match or Default")
                continue
            if kind != "Task":
                raise UnsupportedDefinition(f"state type {kind}")
            try:
                result = self._task(state, document, execution)
            except Exception as exc:
                catch = next((c for c in state.get("Catch", []) if "States.ALL" in c["ErrorEquals"]), None)
                if catch is None:
                    raise
                error = {"Error": type(exc).__name__, "Cause": str(exc)[:2000]}
                execution.error = error
                if catch.get("ResultPath") == "$.error" and isinstance(document, dict):
                    document = {**document, "error": error}
                name = catch["Next"]
                continue
            if "ResultPath" in state and state["ResultPath"] is None:
                pass  # the input passes through unchanged
            else:
                document = result
            if state.get("End"):
                execution.output = document
                return execution
            name = state["Next"]
        raise UnsupportedDefinition("more than 100 state transitions")

    def _matches(self, choice: Mapping[str, Any], document: Any) -> bool:
        if "IsPresent" in choice:
            return _present(document, choice["Variable"]) is bool(choice["IsPresent"])
        raise UnsupportedDefinition(f"Choice rule {sorted(choice)}")

    def _task(self, state: Mapping[str, Any], document: Any, execution: Execution) -> Any:
        parameters = state.get("Parameters", {})
        if state["Resource"] == "arn:aws:states:::lambda:invoke":
            function = self._functions[parameters["FunctionName"]]
            payload = _path(document, parameters["Payload.$"])
            reply = {"Payload": self._invoke(function, payload)}
            return _path(reply, state.get("OutputPath", "$"))
        if state["Resource"] == "arn:aws:states:::sns:publish":
            message = {}
            for key in ("Subject", "Message"):
                if f"{key}.$" in parameters:
                    expression = parameters[f"{key}.$"]
                    message[key] = (self._format(expression, document) if expression.startswith("States.Format")
                                    else str(_path(document, expression)))
                elif key in parameters:
                    message[key] = str(parameters[key])
            execution.notifications.append(message)
            return {"MessageId": f"local-{len(execution.notifications)}"}
        raise UnsupportedDefinition(f"resource {state['Resource']}")

    @staticmethod
    def _format(expression: str, document: Any) -> str:
        inner = expression[len("States.Format("):-1]
        template, *paths = [part.strip() for part in inner.split(", $")]
        text = template.strip("'")
        for path in paths:
            text = text.replace("{}", str(_path(document, "$" + path)), 1)
        return text


@dataclass
class RetrainRun:
    """What the page shows of one local retraining."""

    time: datetime
    states: list[str]
    records: list[dict[str, Any]]
    message: str
    error: dict[str, str] | None
    wall_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"time": iso_utc(self.time), "states": self.states, "records": self.records, "message": self.message,
                "error": self.error, "wall_seconds": round(self.wall_seconds, 1)}


class RetrainLoop:
    """ArchiveFunction daily and the retraining state machine every `every_days`, on the replay clock."""

    def __init__(self, invoke: Invoke, clock: ReplayClock, runner: StateMachineRunner, *, every_days: float,
                 console: Callable[[str], None], end: datetime | None = None) -> None:
        self._invoke, self.clock, self.runner = invoke, clock, runner
        self.every = timedelta(days=every_days)
        self._console = console
        self._end = end
        self.runs: list[RetrainRun] = []
        self.archives = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retrain-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop waiting for the next mark; a training in progress is abandoned (a daemon thread), as a
        deleted stack would abandon its execution."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def archive(self, moment: datetime) -> dict[str, Any] | None:
        try:
            reply = self._invoke("ArchiveFunction", scheduled_event(moment, "traderai-ArchiveDaily"))
        except Exception as exc:  # noqa: BLE001 - on AWS: retried, then the dead-letter queue; shown here
            self._console(f"    ! ArchiveFunction: {type(exc).__name__}: {exc}")
            return None
        self.archives += 1
        return reply

    def retrain(self, moment: datetime) -> RetrainRun:
        started = time.monotonic()
        execution = self.runner.run({"time": iso_utc(moment)}, moment)
        output = execution.output or {}
        notification = execution.notifications[-1] if execution.notifications else {}
        run = RetrainRun(moment, execution.states, list(output.get("records", [])),
                         notification.get("Message", ""), execution.error, time.monotonic() - started)
        self.runs.append(run)
        self._console(f"{moment:%Y-%m-%d %H:%M} UTC  retraining ({' > '.join(run.states)}, {run.wall_seconds:.0f}s):")
        for line in (run.message or str(run.error)).splitlines():
            self._console(f"    {line}")
        return run

    def _run(self) -> None:
        now = self.clock.now()
        next_archive = datetime(now.year, now.month, now.day, tzinfo=now.tzinfo) + ARCHIVE_AT
        if next_archive < now:
            next_archive += timedelta(days=1)
        last_retrain = now  # the first retraining comes `every` after the start, as a weekly schedule would
        while not self._stop.is_set():
            if self._end is not None and next_archive > self._end:
                return
            if self._stop.wait(self.clock.wall_seconds_until(next_archive)):
                return
            self.archive(next_archive)  # the first run backfills the archive up to the replay clock
            due = next_archive - last_retrain >= self.every
            if self.every.total_seconds() > 0 and due and not self._stop.is_set():
                try:
                    self.retrain(next_archive)
                except Exception as exc:  # noqa: BLE001 - a runner bug must not end the loop silently
                    self._console(f"    ! retraining: {type(exc).__name__}: {exc}")
                last_retrain = next_archive
            next_archive += timedelta(days=1)
