"""Unzipped deployable size of every Lambda function (its code plus its layers), arm64 / Python 3.12.

Layers are installed the way `sam build` builds them without a container: each layer's
requirements.txt with pip for aarch64 manylinux (up to glibc 2.34) / CPython 3.12, binary wheels
only, no bytecode; a `BuildMethod: makefile` layer (CoreLayer, TrainingCodeLayer: our own code) with its
recipe in src/Makefile, as `sam build` runs it; any other is its source folder. Functions and layers are
read from infra/template.yaml, so the figures follow the template. Exits 1 if any function exceeds
Lambda's 250 MB unzipped limit.

    .venv/bin/python bench/sizes.py [--cache-dir DIR] [--refresh] [--top N]

Installed layers are cached under the cache dir, keyed by the requirements' hash, so reruns only
measure. `--refresh` reinstalls (pip resolves the newest versions the specifiers allow).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traderai.infra import TEMPLATE_PATH, load_template
from traderai.testing.sam import build_makefile_layer

LAMBDA_UNZIPPED_LIMIT = 262_144_000  # bytes: "250 MB", function code plus all its layers
MB = 1_000_000
# Lambda's python3.12 runtime (Amazon Linux 2023) has glibc 2.34: accept the aarch64 manylinux tags
# `sam build` accepts (aws_lambda_builders python_pip packager). manylinux2014 alone would pick older
# releases of packages that now ship only manylinux_2_28 aarch64 wheels (numpy >= 2.3).
MANYLINUX_AARCH64 = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64",
                     "manylinux_2_34_aarch64")
PIP_PLATFORM_ARGS = ("--only-binary=:all:", *(arg for tag in MANYLINUX_AARCH64 for arg in ("--platform", tag)),
                     "--python-version", "3.12", "--implementation", "cp", "--no-compile")
SKIPPED = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


@dataclass(frozen=True)
class Tree:
    """A built directory and what its unzipped bytes are made of."""

    path: Path
    size: int
    parts: dict[str, int]  # top-level entry -> bytes


def tree_size(root: Path) -> Tree:
    """Bytes of every regular file under `root`, skipping caches and bytecode like `sam build` does."""
    parts: dict[str, int] = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if SKIPPED & set(relative.parts) or path.suffix in {".pyc", ".pyo"}:
            continue
        if path.is_file() and not path.is_symlink():
            parts[relative.parts[0]] = parts.get(relative.parts[0], 0) + path.stat().st_size
    return Tree(root, sum(parts.values()), parts)


def install_layer(requirements: Path, cache_dir: Path, refresh: bool) -> Path:
    """pip-install `requirements` for arm64 / cp312 into a cached target dir; return the dir."""
    key = hashlib.sha256(requirements.read_bytes() + " ".join(PIP_PLATFORM_ARGS).encode()).hexdigest()[:16]
    target = cache_dir / "layers" / f"{requirements.parent.name}-{key}"
    marker = target / ".complete"
    if marker.exists() and not refresh:
        return target
    shutil.rmtree(target, ignore_errors=True)
    print(f"installing {requirements.relative_to(TEMPLATE_PATH.parents[1])} for arm64 ...", file=sys.stderr)
    # --no-warn-conflicts: the target is a separate tree, not this venv, whose pins don't apply.
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                          "--no-warn-conflicts", *PIP_PLATFORM_ARGS, "--cache-dir", str(cache_dir / "pip"),
                          "--target", str(target / "python"), "-r", str(requirements)],
                         capture_output=True, text=True, check=False)
    if pip.returncode != 0:
        sys.exit(f"pip failed for {requirements}:\n{pip.stderr}")
    marker.touch()
    return target


def layer_trees(template: dict[str, Any], cache_dir: Path, refresh: bool) -> dict[str, Tree]:
    """Every LayerVersion in the template, built (or taken from the cache) and measured."""
    trees = {}
    for logical_id, spec in template["Resources"].items():
        if spec["Type"] != "AWS::Serverless::LayerVersion":
            continue
        content = (TEMPLATE_PATH.parent / spec["Properties"]["ContentUri"]).resolve()
        requirements = content / "requirements.txt"
        if spec.get("Metadata", {}).get("BuildMethod") == "makefile":  # our own code: src/Makefile's list
            with tempfile.TemporaryDirectory() as scratch:
                trees[logical_id] = tree_size(build_makefile_layer(content, logical_id, Path(scratch)))
        elif requirements.exists():
            trees[logical_id] = tree_size(install_layer(requirements, cache_dir, refresh) / "python")
        else:
            trees[logical_id] = tree_size(content)
    return trees


def function_sizes(template: dict[str, Any], layers: dict[str, Tree]) -> list[tuple[str, int, list[str], int]]:
    """(function, code bytes, layer ids, total bytes) for every function in the template."""
    rows = []
    for logical_id, spec in template["Resources"].items():
        if spec["Type"] != "AWS::Serverless::Function":
            continue
        props = spec["Properties"]
        code = tree_size((TEMPLATE_PATH.parent / props["CodeUri"]).resolve()).size
        layer_ids = [ref["Ref"] for ref in props.get("Layers", [])]
        rows.append((logical_id, code, layer_ids, code + sum(layers[layer].size for layer in layer_ids)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "traderai-bench-sizes")
    parser.add_argument("--refresh", action="store_true", help="reinstall the layers' requirements")
    parser.add_argument("--top", type=int, default=6, help="largest packages listed per layer")
    args = parser.parse_args(argv)

    template = load_template()
    layers = layer_trees(template, args.cache_dir, args.refresh)
    rows = function_sizes(template, layers)

    print(f"{'layer':<18}{'MB':>8}  largest parts")
    for layer_id, tree in layers.items():
        largest = sorted(tree.parts.items(), key=lambda item: -item[1])[: args.top]
        parts = ", ".join(f"{name} {size / MB:.1f}" for name, size in largest if not name.endswith("-info"))
        print(f"{layer_id:<18}{tree.size / MB:>8.1f}  {parts}")
    print()
    print(f"{'function':<20}{'code MB':>8}{'total MB':>10}{'limit %':>9}  layers")
    over = []
    for function, code, layer_ids, total in rows:
        share = 100 * total / LAMBDA_UNZIPPED_LIMIT
        print(f"{function:<20}{code / MB:>8.2f}{total / MB:>10.1f}{share:>8.0f}%  {' + '.join(layer_ids)}")
        if total > LAMBDA_UNZIPPED_LIMIT:
            over.append(function)
    if over:
        print(f"\nOVER the {LAMBDA_UNZIPPED_LIMIT / MB:.0f} MB unzipped limit: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
