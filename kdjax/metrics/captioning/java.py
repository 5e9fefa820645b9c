"""The Java programs behind the COCO scorers: where their jars are and how to run them.

Each jar is looked up in this order: an explicit path (argument or config), an environment variable,
then the copy shipped inside the `pycocoevalcap` wheel (`pip install pycocoevalcap==1.2`; only the jars
are used, not its Python code). `KDJAX_JAVA` picks the java executable (default: `java` on PATH).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil


class ToolUnavailable(RuntimeError):
    """A scorer's external files are missing; the message names them and how to provide them."""


@dataclasses.dataclass(frozen=True)
class Jar:
    name: str  # what it is, for messages
    env: str  # environment variable holding a path
    package_path: str  # path inside the pycocoevalcap package
    extra: tuple[str, ...] = ()  # files that must sit beside it (relative to the jar's directory)


CORENLP_PTB = Jar("Stanford CoreNLP 3.4.1 (PTB tokenizer)", "KDJAX_CORENLP_JAR",
                  "tokenizer/stanford-corenlp-3.4.1.jar")
METEOR = Jar("METEOR 1.5", "KDJAX_METEOR_JAR", "meteor/meteor-1.5.jar", ("data/paraphrase-en.gz",))
SPICE = Jar("SPICE 1.0", "KDJAX_SPICE_JAR", "spice/spice-1.0.jar",
            ("lib/stanford-corenlp-3.6.0.jar", "lib/stanford-corenlp-3.6.0-models.jar"))


def _package_copy(rel: str) -> str | None:
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], rel)
    return path if os.path.isfile(path) else None


def locate(jar: Jar, explicit: str | None = None) -> str:
    """Path of `jar` with its companion files, or ToolUnavailable naming exactly what is missing."""
    candidates = [("argument", explicit), (f"${jar.env}", os.environ.get(jar.env)),
                  ("pycocoevalcap", _package_copy(jar.package_path))]
    problems = []
    for source, path in candidates:
        if not path:
            continue
        if problems:
            break  # the first path given is the one meant: say it is wrong rather than use another copy
        path = os.path.expanduser(path)
        if not os.path.isfile(path):
            problems.append(f"{source}: {path} does not exist")
            continue
        missing = [e for e in jar.extra if not os.path.isfile(os.path.join(os.path.dirname(path), e))]
        if missing:
            problems.append(f"{source}: {path} lacks " + ", ".join(
                os.path.join(os.path.dirname(path), m) for m in missing))
            continue
        return path
    wanted = os.path.basename(jar.package_path)
    need = ", ".join((wanted,) + jar.extra)
    detail = ("; ".join(problems) + ". ") if problems else ""
    raise ToolUnavailable(f"{jar.name} is not available: {detail}Needed: {need} (companions relative to the "
                          f"jar's directory); give the jar's path in ${jar.env} or the config, or "
                          f"`pip install pycocoevalcap==1.2`, which ships it.")


def java_executable() -> str:
    java = os.environ.get("KDJAX_JAVA", "java")
    found = shutil.which(java)
    if found is None:
        raise ToolUnavailable(f"Java is needed by the METEOR/PTB/SPICE scorers but {java!r} is not on PATH "
                              "(install a JRE >= 8, e.g. `apt-get install openjdk-17-jre-headless`, "
                              "or set KDJAX_JAVA)")
    return found
