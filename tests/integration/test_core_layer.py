"""The layers hold what Lambda runs, and nothing else: built here as `sam build` builds them.

`sam build` copies a layer's ContentUri (src/ for our code, layers/ for the third-party ones) to a scratch
folder and runs `make build-<LayerId>` there with ARTIFACTS_DIR set (BuildMethod: makefile); Lambda extracts
a function's layers into one /opt, whose `python/` is on sys.path. This test does the same (SAM CLI pins its
own boto3 and lives outside the project's environment), then imports, for every function, every module of
its layers and its handler from those layers alone; and its handler once more from its built layers and the
runtime's AWS SDK only, reading the shipped bytecode.

The third-party layers are built from PyPI (pip, binary wheels): once per edit of layers/, cached under the
temp dir (traderai.testing.sam.built_layer), about a minute the first time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from traderai.infra import load_template
from traderai.testing.handlers import FUNCTIONS_DIR, REPO_ROOT
from traderai.testing.sam import LAYER_CACHE, build_makefile_layer, built_layer, layer_content

SRC = REPO_ROOT / "src"
SHIPPED_TOP = {"__init__.py", "py.typed", "contracts.py", "ports.py", "settings.py", "observability.py", "events.py",
               "wiring.py", "core", "adapters", "market", "services", "routes", "model", "analytics", "data", "sql"}
SHIPPED_IN = {"model": {"__init__.py", "serving.py", "layout.py"}, "analytics": {"__init__.py", "queries.py"}}
NEVER_SHIPPED = ("testing", "apigw", "local", "research", "web", "cli.py", "keys_cli.py", "models_cli.py",
                 "notify_cli.py", "infra.py", "train.py", "model/fit.py", "model/outcome.py", "model/labels.py",
                 "analytics/local.py", "analytics/schema.py", "analytics/template.py")
TRAINING = {"train.py", "model/fit.py", "model/labels.py", "model/outcome.py", "research/__init__.py",
            "research/evidence.py", "research/backtest.py", "research/walkforward.py", "research/stats.py"}
OUR_LAYERS = ("CoreLayer", "TrainingCodeLayer")
DEPS_LAYERS = ("PredictDepsLayer", "ApiDepsLayer", "TrainingDepsLayer")
LAYERS_DIR = REPO_ROOT / "layers"
LOCKS = {"PredictDepsLayer": "predict-deps", "ApiDepsLayer": "api-deps", "TrainingDepsLayer": "training-deps"}
# What Lambda's python3.12 runtime has besides the standard library: the AWS SDK and what it requires. The
# handler probe below stands them in with this environment's copies (their versions, not the runtime's).
RUNTIME_SDK = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3")

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
    assert {p.name for p in package.iterdir()} == SHIPPED_TOP | {"__pycache__"}  # bytecode: see below
    for folder, files in SHIPPED_IN.items():
        assert {p.name for p in (package / folder).iterdir()} == files | {"__pycache__"}
    for path in NEVER_SHIPPED:
        assert not (package / path).exists(), path
    assert (package / "data" / "candles").is_dir() and (package / "data" / "models").is_dir()  # the replay source


def test_training_code_layer_holds_exactly_the_training_modules(training: Path) -> None:
    package = training / "traderai"
    assert {str(p.relative_to(package)) for p in package.rglob("*.py")} == TRAINING
    assert {p.name for p in package.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")} == set()


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


# ---------------------------------------------------------------- bytecode and the third-party layers

UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, source not checked


def _lock_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("layers_lock", LAYERS_DIR / "lock.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pyc_flags(source: Path) -> int:
    """The PEP 552 flags of `source`'s cached bytecode, after checking it is this (3.12) interpreter's."""
    header = Path(importlib.util.cache_from_source(str(source))).read_bytes()[:8]
    assert header[:4] == importlib.util.MAGIC_NUMBER, source
    return int.from_bytes(header[4:8], "little")


def _sources(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.py") if not {"tests", "test"} & set(p.relative_to(root).parts)]


@pytest.mark.parametrize("layer_id", OUR_LAYERS)
def test_our_layers_ship_unchecked_bytecode_for_every_module(layer_id: str, built: Path, training: Path) -> None:
    layer = {"CoreLayer": built, "TrainingCodeLayer": training}[layer_id]
    sources = _sources(layer)
    assert len(sources) > (60 if layer_id == "CoreLayer" else 8)
    assert {source: _pyc_flags(source) for source in sources} == dict.fromkeys(sources, UNCHECKED_HASH)


@pytest.mark.parametrize("layer_id", DEPS_LAYERS)
def test_template_builds_the_deps_layers_from_their_lock_with_the_layers_makefile(layer_id: str) -> None:
    layer = load_template()["Resources"][layer_id]
    assert layer_content(layer_id) == LAYERS_DIR
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    assert f"build-{layer_id}:" in (LAYERS_DIR / "Makefile").read_text()
    assert f"{LOCKS[layer_id]}/requirements.txt" in (LAYERS_DIR / "Makefile").read_text()


def _lock(layer_id: str) -> dict[str, str]:
    """name -> version pinned in the layer's lock."""
    pins = {}
    for line in (LAYERS_DIR / LOCKS[layer_id] / "requirements.txt").read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, version = requirement.split("==")
            pins[name] = version
    return pins


def _shipped(python: Path) -> dict[str, Path]:
    """Canonical distribution name -> its .dist-info folder, for every distribution in a built layer."""
    from packaging.utils import canonicalize_name

    return {canonicalize_name(info.name.removesuffix(".dist-info").rsplit("-", 1)[0]): info
            for info in python.glob("*.dist-info")}


@pytest.mark.parametrize("layer_id", DEPS_LAYERS)
def test_a_deps_layer_ships_its_lock_and_all_it_requires_but_the_runtime_sdk_and_unused(layer_id: str) -> None:
    from email.parser import Parser

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lock_tool = _lock_tool()
    python = built_layer(layer_id, LAYER_CACHE)  # arm64: what sam build uploads
    shipped = _shipped(python)
    assert {name: info.name.removesuffix(".dist-info").rsplit("-", 1)[1] for name, info in shipped.items()} == \
        _lock(layer_id)
    for left_out in ("boto3", "botocore", "s3transfer", "jmespath", "uvloop"):
        assert left_out in lock_tool.LEFT_OUT and left_out not in shipped and not (python / left_out).exists()
    missing = {}
    for name, info in shipped.items():
        metadata = Parser().parsestr((info / "METADATA").read_text())
        for line in metadata.get_all("Requires-Dist") or ():
            requirement = Requirement(line)
            needed = canonicalize_name(requirement.name)
            if lock_tool.applies(requirement, frozenset()) and needed not in {*shipped, *lock_tool.LEFT_OUT}:
                missing[name] = needed
    assert missing == {}


def test_the_deps_layers_ship_bytecode_but_the_training_one() -> None:
    for layer_id in ("PredictDepsLayer", "ApiDepsLayer"):
        python = built_layer(layer_id, LAYER_CACHE)
        sources = [p for p in _sources(python) if "ccxt" not in p.parts]
        assert len(sources) > 200
        flags = {source: _pyc_flags(source) for source in sources}
        assert flags == dict.fromkeys(sources, UNCHECKED_HASH), layer_id
    ccxt = built_layer("PredictDepsLayer", LAYER_CACHE) / "ccxt"  # bytecode only: layers/Makefile says why
    assert not list(ccxt.rglob("*.py"))
    assert (ccxt / "__init__.pyc").is_file() and (ccxt / "async_support" / "binance.pyc").is_file()
    assert not list(built_layer("TrainingDepsLayer", LAYER_CACHE).rglob("*.pyc"))


HANDLER_PROBE = """
import importlib.util, json, sys
from pathlib import Path

opt, deps, sdk, handler = sys.argv[1:5]
layers = [opt, *deps.split(",")] if deps else [opt]
sys.path[:0] = [*layers, sdk]  # /opt/python, then the runtime's own site-packages (its AWS SDK)
spec = importlib.util.spec_from_file_location("app", handler)
spec.loader.exec_module(importlib.util.module_from_spec(spec))
from_opt = {n: m for n, m in sys.modules.items() if (getattr(m, "__file__", None) or "").startswith(tuple(layers))}
from_source = sorted(n for n, m in from_opt.items() if m.__file__.endswith(".py")
                     and not Path(m.__cached__ or "").is_file())
print(json.dumps({"from_opt": len(from_opt), "from_source": from_source,
                  "from_sdk": sorted({n.split(".")[0] for n, m in sys.modules.items()
                                      if (getattr(m, "__file__", None) or "").startswith(sdk)})}))
"""


@pytest.fixture(scope="module")
def runtime_sdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lambda's runtime site-packages, stood in: this environment's AWS SDK and what it needs, nothing else."""
    import boto3

    site = Path(boto3.__file__).parents[1]
    sdk = tmp_path_factory.mktemp("runtime-sdk")
    for name in RUNTIME_SDK:
        (sdk / name).symlink_to(site / name)
    return sdk


@pytest.mark.parametrize("function", sorted(_functions()))
def test_each_handler_imports_from_its_built_layers_and_the_runtime_sdk_alone_on_shipped_bytecode(
        function: str, built: Path, training: Path, runtime_sdk: Path, tmp_path: Path) -> None:
    folder, ours = _functions()[function]
    deps = [ref["Ref"] for ref in load_template()["Resources"][function]["Properties"]["Layers"]
            if ref["Ref"] in DEPS_LAYERS]
    opt = tmp_path / "python"
    for layer in ours:
        shutil.copytree({"CoreLayer": built, "TrainingCodeLayer": training}[layer], opt, dirs_exist_ok=True)
    # the third-party layer read where it was built (the same lock as this machine's wheels, so it imports here),
    # next to /opt rather than copied into it: no package of ours is in it, so nothing needs merging
    deps_paths = ",".join(str(built_layer(layer, LAYER_CACHE, host=True)) for layer in deps)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "POWERTOOLS_TRACE_DISABLED": "1",
           "AWS_DEFAULT_REGION": "us-east-1", "PYTHONDONTWRITEBYTECODE": "1"}
    # -S: no site-packages and no editable install, so only the standard library besides the two folders
    result = subprocess.run([sys.executable, "-S", "-c", HANDLER_PROBE, str(opt), deps_paths, str(runtime_sdk),
                             str(FUNCTIONS_DIR / folder / "app.py")],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    assert report["from_opt"] > 20
    # every module from the layers was read from its shipped bytecode; TrainingDepsLayer ships none (its recipe
    # says why), so there only our own code is held to it
    compiled_at_import = report["from_source"]
    if "TrainingDepsLayer" in deps:
        compiled_at_import = [name for name in compiled_at_import if name.split(".")[0] == "traderai"]
    assert compiled_at_import == []
    assert set(report["from_sdk"]) <= {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3"}
