"""CoreLayer holds what Lambda runs, and nothing else: built here as `sam build` builds it.

`sam build` copies a layer's ContentUri (src/) to a scratch folder and runs `make build-<LayerId>` there
with ARTIFACTS_DIR set (BuildMethod: makefile); Lambda extracts a function's layers into one /opt, whose
`python/` is on sys.path. This test does the same (SAM CLI pins its own boto3 and lives outside the
project's environment), then imports, for every function, every module of its layers and its handler
from those layers alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from traderai.infra import load_template
from traderai.testing.handlers import FUNCTIONS_DIR, REPO_ROOT
from traderai.testing.sam import build_makefile_layer

SRC = REPO_ROOT / "src"
SHIPPED_TOP = {"__init__.py", "py.typed", "contracts.py", "ports.py", "settings.py", "observability.py", "events.py",
               "wiring.py", "core", "adapters", "market", "services", "routes", "model", "analytics", "data", "sql"}
SHIPPED_IN = {"model": {"__init__.py", "serving.py", "layout.py"}, "analytics": {"__init__.py", "queries.py"}}
NEVER_SHIPPED = ("testing", "local", "research", "web", "cli.py", "keys_cli.py", "models_cli.py", "notify_cli.py",
                 "infra.py", "train.py", "model/fit.py", "model/outcome.py", "model/labels.py", "analytics/local.py",
                 "analytics/schema.py", "analytics/template.py")
TRAINING = {"train.py", "model/fit.py", "model/labels.py", "model/outcome.py", "research/__init__.py",
            "research/evidence.py", "research/backtest.py", "research/walkforward.py", "research/stats.py"}
OUR_LAYERS = ("CoreLayer", "TrainingCodeLayer")

PROBE = """
import importlib, importlib.util, json, pkgutil, sys
from pathlib import Path

layer, src, handler = (Path(a).resolve() for a in sys.argv[1:4])
sys.path = [str(layer)] + [p for p in sys.path if p and Path(p).resolve() != src]
import traderai

modules = sorted(m.name for m in pkgutil.walk_packages(traderai.__path__, "traderai."))
for name in modules:
    importlib.import_module(name)
spec = importlib.util.spec_from_file_location("app", handler)
spec.loader.exec_module(importlib.util.module_from_spec(spec))
outside = sorted(n for n, m in sys.modules.items() if n.split(".")[0] == "traderai"
                 and not Path(m.__file__ or layer).resolve().is_relative_to(layer))
print(json.dumps({"modules": modules, "outside": outside}))
"""


def build(layer_id: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer as `sam build` makes it: the recipe run in a scratch copy of ContentUri, ARTIFACTS_DIR set."""
    return build_makefile_layer(SRC, layer_id, tmp_path_factory.mktemp(layer_id))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build("CoreLayer", tmp_path_factory)


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build("TrainingCodeLayer", tmp_path_factory)


@pytest.mark.parametrize("layer_id", OUR_LAYERS)
def test_template_builds_our_layers_from_src_with_its_makefile(layer_id: str) -> None:
    layer = load_template()["Resources"][layer_id]
    assert layer["Properties"]["ContentUri"].rstrip("/") == "../src"
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    assert f"build-{layer_id}:" in (SRC / "Makefile").read_text()


def test_core_layer_holds_exactly_the_lambda_packages(built: Path) -> None:
    package = built / "traderai"
    assert {p.name for p in package.iterdir()} == SHIPPED_TOP
    for folder, files in SHIPPED_IN.items():
        assert {p.name for p in (package / folder).iterdir()} == files
    for path in NEVER_SHIPPED:
        assert not (package / path).exists(), path
    assert not list(package.rglob("__pycache__"))
    assert (package / "data" / "candles").is_dir() and (package / "data" / "models").is_dir()  # the replay source


def test_training_code_layer_holds_exactly_the_training_modules(training: Path) -> None:
    package = training / "traderai"
    assert {str(p.relative_to(package)) for p in package.rglob("*") if p.is_file()} == TRAINING


def _functions() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every function of the template: its handler folder and which of our layers it carries."""
    functions = {}
    for logical_id, resource in load_template()["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            props = resource["Properties"]
            ours = tuple(ref["Ref"] for ref in props.get("Layers", []) if ref.get("Ref") in OUR_LAYERS)
            functions[logical_id] = (Path(props["CodeUri"]).name, ours)
    return functions


@pytest.mark.parametrize("function", sorted(_functions()))
def test_each_function_imports_its_layers_modules_and_its_handler_from_them_alone(
        function: str, built: Path, training: Path, tmp_path: Path) -> None:
    folder, layers = _functions()[function]
    assert layers[0] == "CoreLayer", function
    opt = tmp_path / "python"  # Lambda extracts every layer of the function into one /opt, in order
    for layer in layers:
        shutil.copytree({"CoreLayer": built, "TrainingCodeLayer": training}[layer], opt, dirs_exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "POWERTOOLS_TRACE_DISABLED": "1",
           "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run([sys.executable, "-c", PROBE, str(opt), str(SRC), str(FUNCTIONS_DIR / folder / "app.py")],
                            capture_output=True, text=True, env=env, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    assert report["outside"] == []
    assert {"traderai.wiring", "traderai.services.predict", "traderai.model.serving"} <= set(report["modules"])
