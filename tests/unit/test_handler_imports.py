"""Every handler loads only the heavy libraries its function's layers carry.

Each handler module under `functions/` is imported in a fresh interpreter (nothing else loaded, no
environment needed), and the modules it pulled in are checked against its function's `Layers` in the
template: numpy, pandas, scikit-learn, scipy and ccxt only where a dependency layer of that function
lists them (its `requirements.txt`). The API, WebSocket, broadcast and authorizer handlers carry
ApiDepsLayer, which lists none of them, so they must load none.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from traderai.infra import REPO_ROOT, load_template
from traderai.testing.handlers import FUNCTIONS_DIR

HEAVY = {"numpy": "numpy", "pandas": "pandas", "scikit-learn": "sklearn", "scipy": "scipy", "ccxt": "ccxt"}
"""Distribution -> the module it is imported as."""
PROBE = """
import json, sys
from traderai.testing.handlers import load_handler
module = load_handler(sys.argv[1])
assert callable(module.handler)
print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))
"""
TEMPLATE = load_template()
HANDLER_DIRS = sorted(p.name for p in FUNCTIONS_DIR.iterdir() if (p / "app.py").is_file())


def _ref(value: Any) -> str:
    return value["Ref"] if isinstance(value, dict) else str(value)


def function_of(directory: str) -> dict[str, Any]:
    """The template's function whose CodeUri is `functions/<directory>/`."""
    for spec in TEMPLATE["Resources"].values():
        code_uri = str(spec.get("Properties", {}).get("CodeUri", "")).rstrip("/")
        if spec["Type"] == "AWS::Serverless::Function" and PurePosixPath(code_uri).name == directory:
            return spec
    raise LookupError(f"functions/{directory}/ is no function of the template")


def requirements_of(layer_id: str) -> Path | None:
    """The lock a dependency layer installs: `<ContentUri>/requirements.txt`, or with `BuildMethod: makefile`
    the one its `build-<LayerId>` target installs; None for a layer of our own code (CoreLayer, ...)."""
    content = REPO_ROOT / "infra" / TEMPLATE["Resources"][layer_id]["Properties"]["ContentUri"]
    if (content / "requirements.txt").is_file():
        return content / "requirements.txt"
    makefile = (content / "Makefile").read_text() if (content / "Makefile").is_file() else ""
    recipe = re.search(rf"^build-{layer_id}:\n((?:\t.*\n)+)", makefile, re.M)
    lock = re.search(r"([\w./-]+/requirements\.txt)", recipe.group(1)) if recipe else None
    return content / lock.group(1) if lock else None


def heavy_in_layers(function: dict[str, Any]) -> set[str]:
    """The heavy modules the function's dependency layers install (from their requirements.txt)."""
    allowed: set[str] = set()
    for layer in function["Properties"].get("Layers", []):
        requirements = requirements_of(_ref(layer))
        if requirements is None:
            continue
        for line in requirements.read_text().splitlines():
            name = re.split(r"[\[=<>~ #]", line.strip(), maxsplit=1)[0].lower()
            if name in HEAVY:
                allowed.add(HEAVY[name])
    return allowed


def test_every_handler_is_a_function_of_the_template() -> None:
    assert len(HANDLER_DIRS) >= 14
    for directory in HANDLER_DIRS:
        function_of(directory)


def test_the_layers_say_what_they_carry() -> None:
    for directory in ("api", "websocket", "broadcast", "authorizer"):
        assert heavy_in_layers(function_of(directory)) == set(), directory
    assert heavy_in_layers(function_of("predict")) == {"numpy", "ccxt"}
    assert heavy_in_layers(function_of("train")) == {"numpy", "scipy", "sklearn"}


@pytest.mark.parametrize("directory", HANDLER_DIRS)
def test_a_handler_imports_only_the_heavy_libraries_its_layers_carry(directory: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "POWERTOOLS_TRACE_DISABLED": "1", "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run([sys.executable, "-c", PROBE, directory], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.splitlines()[-1])) & set(HEAVY.values())
    extra = loaded - heavy_in_layers(function_of(directory))
    assert not extra, f"functions/{directory} imports {sorted(extra)}, which its layers do not carry"


LOADED = """
import json, sys
from traderai.testing.handlers import load_handler
module = load_handler("api")
from traderai.services import api, performance
built = sorted(m.__name__ for m in (api.ErrorBody, api.GatewayError, api.Health, api.SignalPage,
                                    *(getattr(performance, n) for n in dir(performance)))
               if isinstance(m, type) and issubclass(m, api.ApiModel) and m.__pydantic_complete__)
print(json.dumps({"modules": sorted(sys.modules), "built": built}))
"""


def test_the_api_handler_loads_at_import_only_what_its_routes_need() -> None:
    """ApiFunction's import (every cold start, whichever route it serves) loads no adapter of another function, not
    the chart's route (ChartFunction serves it; the API documents it at GET /openapi.json) and builds no reply
    model's validator (each is built at its first use, by the route that replies with it)."""
    env = {"PATH": "/usr/bin:/bin", "POWERTOOLS_TRACE_DISABLED": "1", "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run([sys.executable, "-c", LOADED], capture_output=True, text=True, env=env, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.splitlines()[-1])
    others = {"traderai.adapters.connections", "traderai.adapters.push", "traderai.adapters.deliveries",
              "traderai.adapters.market_list", "traderai.adapters.athena", "traderai.services.sharding",
              "traderai.routes.chart", "traderai.services.chart"}
    assert others & set(loaded["modules"]) == set()
    assert "traderai.adapters.signal_store" in loaded["modules"]  # every data route reads it: loaded at import
    assert loaded["built"] == []


COLLECTIONS = """
import gc, json
from traderai.testing.handlers import load_handler
collections, frozen = [], gc.get_freeze_count()  # the interpreter's own at start
gc.callbacks.append(lambda phase, info: collections.append(info["generation"]) if phase == "stop" else None)
load_handler("api")
frozen = gc.get_freeze_count() - frozen
print(json.dumps({"collections": len(collections), "enabled": gc.isenabled(), "frozen": frozen}))
"""


@pytest.mark.parametrize("on_lambda", [True, False], ids=["on Lambda", "elsewhere"])
def test_on_lambda_the_api_handler_loads_without_garbage_collection(on_lambda: bool) -> None:
    """On Lambda the collector waits while ApiFunction's module loads, then what the load created is frozen out of
    later collections and the collector runs again; elsewhere (tests, the local stack) nothing changes."""
    env = {"PATH": "/usr/bin:/bin", "POWERTOOLS_TRACE_DISABLED": "1", "AWS_DEFAULT_REGION": "us-east-1",
           **({"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"} if on_lambda else {})}
    result = subprocess.run([sys.executable, "-c", COLLECTIONS], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.splitlines()[-1])
    assert probe["enabled"]
    if on_lambda:
        assert probe["collections"] == 0
        assert probe["frozen"] > 10_000  # the modules, classes and functions the load created
    else:
        assert probe["collections"] > 0
        assert probe["frozen"] == 0
