"""Write each deps layer's lock, `<layer>/requirements.txt`: the pinned list of exactly what the layer ships.

`<layer>/requirements.in` names what our code imports. pip resolves it as Lambda will run it (arm64
manylinux wheels up to glibc 2.34, CPython 3.12, binary only); the lock keeps every resolved distribution
except what Lambda's python3.12 runtime already provides (RUNTIME) and what nothing imports (UNUSED), and
except what only those require. `layers/Makefile` installs the lock with `--no-deps`, so the lock is the
single list of what ships. tests/integration/test_core_layer.py checks that the built layer holds what every
shipped distribution requires.

    .venv/bin/python layers/lock.py [predict-deps api-deps training-deps]

Needs PyPI (pip downloads metadata only). Rerun after editing a requirements.in.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LAYERS_DIR = Path(__file__).resolve().parent
LAYERS = ("predict-deps", "api-deps", "training-deps")
# Lambda's python3.12 runtime (Amazon Linux 2023, glibc 2.34): the aarch64 manylinux tags sam build accepts.
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64")
# Markers evaluated as Lambda's arm64 python3.12 sees them (pip evaluates them for this machine).
LAMBDA_ENV = {"python_version": "3.12", "python_full_version": "3.12.0", "implementation_name": "cpython",
              "implementation_version": "3.12.0", "platform_python_implementation": "CPython",
              "platform_machine": "aarch64", "platform_system": "Linux", "sys_platform": "linux", "os_name": "posix",
              "platform_release": "", "platform_version": ""}
# The AWS SDK inside Lambda's python3.12 runtime: a second copy in a layer is 21 MB of botocore that shadows
# the runtime's. The project needs botocore >= 1.35.69 (pyproject.toml; docs/design.md, "The Lambda layers").
RUNTIME = dict.fromkeys(("boto3", "botocore", "s3transfer", "jmespath"), "Lambda's python3.12 runtime provides it")
# Required by a shipped distribution but never imported by it on Lambda.
UNUSED = {"uvloop": "ccxt requires it on CPython but never imports it (no `import uvloop` in ccxt); 16 MB"}
LEFT_OUT = {**RUNTIME, **UNUSED}


def applies(requirement: Requirement, extras: frozenset[str]) -> bool:
    """Whether `requirement` holds on Lambda's arm64 python3.12 for a distribution installed with `extras`."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**LAMBDA_ENV, "extra": extra}) for extra in (extras or {""}))


def resolve(requirements_in: Path) -> list[dict]:
    """pip's install report for `requirements_in` on Lambda's platform (nothing is installed)."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--dry-run",
                   "--ignore-installed", "--only-binary=:all:", *(a for p in PLATFORMS for a in ("--platform", p)),
                   "--python-version", "3.12", "--implementation", "cp", "--target", str(Path(scratch) / "t"),
                   "--report", str(report), "-r", str(requirements_in)]
        subprocess.run(command, check=True)  # noqa: S603 - pip on our own requirements file
        return json.loads(report.read_text())["install"]


def shipped(items: list[dict]) -> dict[str, tuple[str, set[str]]]:
    """name -> (version, the shipped distributions that require it), walking from what requirements.in asked
    for and never into LEFT_OUT."""
    by_name = {canonicalize_name(i["metadata"]["name"]): i for i in items}
    keep: dict[str, tuple[str, set[str]]] = {}
    queue = [(canonicalize_name(i["metadata"]["name"]), frozenset(i.get("requested_extras") or ()), "")
             for i in items if i.get("requested")]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        name, extras, parent = queue.pop()
        if name in LEFT_OUT:
            continue
        if name not in by_name:
            raise SystemExit(f"{name} (required by {parent}) applies on Lambda but pip did not resolve it")
        version = by_name[name]["metadata"]["version"]
        keep.setdefault(name, (version, set()))[1].update({parent} - {""})
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for line in by_name[name]["metadata"].get("requires_dist") or ():
            requirement = Requirement(line)
            if applies(requirement, extras):
                queue.append((canonicalize_name(requirement.name), frozenset(requirement.extras), name))
    return keep


def lock_text(requirements_in: Path, keep: dict[str, tuple[str, set[str]]], resolved: set[str]) -> str:
    header = [line for line in requirements_in.read_text().splitlines() if line.startswith("#")]
    lines = [*header, "#", "# Written by layers/lock.py from requirements.in: what ships, pinned, installed with",
             "# --no-deps. Do not edit: edit requirements.in, rerun `.venv/bin/python layers/lock.py`."]
    for name in sorted(keep):
        version, parents = keep[name]
        via = f"  # via {', '.join(sorted(parents))}" if parents else ""
        lines.append(f"{name}=={version}{via}")
    left_out = sorted(resolved - set(keep))
    if left_out:
        lines.append("# Resolved but left out:")
        lines.extend(f"#   {name}: {LEFT_OUT.get(name, 'required only by what is left out')}" for name in left_out)
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    for layer in argv or LAYERS:
        requirements_in = LAYERS_DIR / layer / "requirements.in"
        items = resolve(requirements_in)
        keep = shipped(items)
        resolved = {canonicalize_name(i["metadata"]["name"]) for i in items}
        (LAYERS_DIR / layer / "requirements.txt").write_text(lock_text(requirements_in, keep, resolved))
        print(f"{layer}: {len(keep)} distributions ship, {len(resolved - set(keep))} left out", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
