"""An English corpus built offline: the docstrings of the Python standard library this interpreter ships (modules,
classes and functions; test suites, IDLE, tkinter and the demos left out), each of at least `min_words` words, in
the order of their files and positions, duplicates dropped. About 2,900 documents and 190,000 words under CPython
3.11: technical English prose with some code, reproducible on any machine with the same Python (distill_lm's
report records the Python and the corpus's sha256, so two machines can tell whether they trained on the same text).
"""

from __future__ import annotations

import ast
import os
import sysconfig

SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3", "__pycache__", "turtledemo",
             "tkinter", "ensurepip"}


def texts(min_words: int = 20) -> list[str]:
    """The docstrings of at least `min_words` words, in file and position order, each once."""
    root = sysconfig.get_paths()["stdlib"]
    out: dict[str, None] = {}
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and not x.startswith("."))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(d, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):  # a few stdlib files are deliberately broken
                continue
            nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                                                 ast.AsyncFunctionDef))]
            for node in sorted(nodes, key=lambda n: getattr(n, "lineno", 0)):
                doc = ast.get_docstring(node)
                if doc and len(doc.split()) >= min_words:
                    out.setdefault(doc.strip(), None)
    return list(out)
