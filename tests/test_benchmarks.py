"""The benchmark scripts are too slow for CI, so nothing runs them between measurements; this checks that every
kdjax (or configs) name they import or reach through a module exists, the way they broke before
(effaac_cost called a helper that had moved)."""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
OURS = ("kdjax", "configs", "benchmarks", "tests")  # tests: the PyTorch references some benchmarks time against


def _references(path: pathlib.Path) -> list[tuple[int, str, str | None]]:
    """(line, module, attribute or None) for each project name the script imports or uses as module.attr."""
    tree = ast.parse(path.read_text(), str(path))
    aliases: dict[str, str] = {}
    refs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in OURS:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                refs.append((node.lineno, node.module, a.name))
                aliases[a.asname or a.name] = full
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in OURS:
                    refs.append((node.lineno, a.name, None))
                    if a.asname:  # import kdjax.x as y: y is kdjax.x
                        aliases[a.asname] = a.name
                    else:  # import kdjax.x binds kdjax
                        aliases[a.name.split(".")[0]] = a.name.split(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            refs.append((node.lineno, aliases[node.value.id], node.attr))
    return refs


def _exists(dotted: str, attr: str | None) -> bool:
    """Whether dotted (a module, or an object inside one) has attr, as an attribute or a submodule."""
    parts = dotted.split(".") + ([attr] if attr else [])
    for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


# aot_memory.py runs `python -m kdjax.aot` (tests/test_aot.py); common.py holds the timing helpers the others import
USERS = sorted(p.name for p in BENCH.glob("*.py") if _references(p))


def test_every_model_benchmark_is_checked():
    assert {"dsg_kd_step.py", "audio_encoder.py", "caption_metrics.py", "effaac_cost.py",
            "multi2cap_step.py"} <= set(USERS)


@pytest.mark.parametrize("script", USERS)
def test_benchmark_uses_only_names_that_exist(script):
    refs = _references(BENCH / script)
    missing = [f"{script}:{line}: {module}{'.' + attr if attr else ''}" for line, module, attr in refs
               if not _exists(module, attr)]
    assert not missing, "\n".join(missing)


def test_the_check_sees_a_moved_name(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from kdjax.systems import multi2cap\n    return multi2cap._ShapeTokenizer(3)\n")
    refs = _references(bad)
    assert (3, "kdjax.systems.multi2cap", "_ShapeTokenizer") in refs
    assert not _exists("kdjax.systems.multi2cap", "_ShapeTokenizer")
    assert _exists("kdjax.train.task", "ShapeTokenizer") and _exists("kdjax", "convert")  # a submodule
    assert _exists("kdjax.train.task.ShapeTokenizer", "__init__")  # a name imported from a module
    assert not _exists("kdjax.train.task.ShapeTokenizer", "nope") and not _exists("kdjax.nope", None)
