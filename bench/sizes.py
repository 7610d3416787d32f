"""Unzipped deployable size of every Lambda function (its code plus its layers), arm64 / Python 3.12.

Every layer is built as `sam build` builds it (BuildMethod makefile): its recipe (src/Makefile for our
code, layers/Makefile for the pinned third-party locks: arm64 manylinux wheels for CPython 3.12, then
bytecode) run in a copy of its ContentUri; the built folder is measured as it ships, bytecode included.
A function's own CodeUri is measured without bytecode, as sam build copies it. Functions and layers are
read from infra/template.yaml, so the figures follow the template. Exits 1 if any function exceeds
Lambda's 250 MB unzipped limit.

    .venv/bin/python bench/sizes.py [--cache-dir DIR] [--refresh] [--top N]

Built layers are cached under the cache dir, keyed by the hash of their ContentUri's files, so reruns
only measure. `--refresh` rebuilds them (the third-party ones from PyPI).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traderai.infra import TEMPLATE_PATH, load_template
from traderai.testing.sam import LAYER_CACHE, built_layer

LAMBDA_UNZIPPED_LIMIT = 262_144_000  # bytes: "250 MB", function code plus all its layers
MB = 1_000_000
SKIPPED = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


@dataclass(frozen=True)
class Tree:
    """A built directory and what its unzipped bytes are made of."""

    path: Path
    size: int
    parts: dict[str, int]  # top-level entry -> bytes


def tree_size(root: Path, bytecode: bool = False) -> Tree:
    """Bytes of every regular file under `root`; tool caches are skipped, and bytecode too unless `bytecode`
    (a built layer ships its bytecode; sam build copies a function's source folder without it)."""
    parts: dict[str, int] = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if not bytecode and ("__pycache__" in relative.parts or path.suffix in {".pyc", ".pyo"}):
            continue
        if SKIPPED & set(relative.parts) - {"__pycache__"}:
            continue
        if path.is_file() and not path.is_symlink():
            parts[relative.parts[0]] = parts.get(relative.parts[0], 0) + path.stat().st_size
    return Tree(root, sum(parts.values()), parts)


def layer_trees(template: dict[str, Any], cache_dir: Path, refresh: bool) -> dict[str, Tree]:
    """Every LayerVersion in the template, built by its recipe for arm64 (or taken from the cache) and measured."""
    trees = {}
    for logical_id, spec in template["Resources"].items():
        if spec["Type"] != "AWS::Serverless::LayerVersion":
            continue
        if spec.get("Metadata", {}).get("BuildMethod") == "makefile":  # src/Makefile, layers/Makefile
            if refresh:
                shutil.rmtree(cache_dir, ignore_errors=True)
                refresh = False
            trees[logical_id] = tree_size(built_layer(logical_id, cache_dir), bytecode=True)
        else:
            trees[logical_id] = tree_size((TEMPLATE_PATH.parent / spec["Properties"]["ContentUri"]).resolve())
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
    parser.add_argument("--cache-dir", type=Path, default=LAYER_CACHE, help="built layers (shared with the tests)")
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
