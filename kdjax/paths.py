"""Paths that may be local or in a bucket: workdirs, checkpoints, teacher caches, datasets and exports.

Every path a user gives kdjax may be an etils.epath URI (`gs://bucket/run`, s3://, ...) as well as a local path
(spaces included). kdjax reads and writes its own files through these helpers, orbax through epath and
tensorstore. Object stores have no rename, append or exclusive create: the helpers keep local writes atomic
(write a temporary, then rename) and make the remote equivalent one whole-object write, which is atomic on GCS.
Libraries that insist on a local filename (transformers' save_pretrained, a tokenizer directory, safetensors)
get a local staging copy: `local_dir` uploads what they wrote, `local_copy` downloads what they read.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import shutil
import tempfile
from typing import Iterator, Union

from etils import epath

PathLike = Union[str, os.PathLike]


def is_remote(p: PathLike) -> bool:
    """A URI (gs://, s3://, memory://, ...) rather than a path on this machine."""
    return "://" in os.fspath(p)


def path(p: PathLike) -> epath.Path:
    """The epath.Path of a local path or a URI; local paths are made absolute, as orbax requires."""
    return epath.Path(p) if is_remote(p) else epath.Path(os.path.abspath(os.fspath(p)))


def join(p: PathLike, *parts: str) -> str:
    """`os.path.join` that leaves a URI's scheme alone and returns a plain string (what configs and JSON hold)."""
    return os.fspath(path(p).joinpath(*parts)) if is_remote(p) else os.path.join(os.fspath(p), *parts)


def parent(p: PathLike) -> str:
    """The directory holding p, absolute (what a manifest's relative paths are relative to)."""
    return os.path.dirname(os.fspath(path(p)))


def exists(p: PathLike) -> bool:
    return path(p).exists()


def isfile(p: PathLike) -> bool:
    q = path(p)
    return q.exists() and not q.is_dir()


def isdir(p: PathLike) -> bool:
    return path(p).is_dir()


def listdir(p: PathLike) -> list[str]:
    return sorted(c.name for c in path(p).iterdir())


def makedirs(p: PathLike) -> None:
    path(p).mkdir(parents=True, exist_ok=True)


def remove(p: PathLike) -> None:
    path(p).unlink()


def getsize(p: PathLike) -> int:
    return path(p).stat().length if is_remote(p) else os.path.getsize(p)


def walk_files(root: PathLike) -> list[str]:
    """Every file under root, as paths relative to it, sorted."""
    if not is_remote(root):
        return sorted(os.path.relpath(os.path.join(d, n), root) for d, _, names in os.walk(root) for n in names)
    bare = lambda p: os.fspath(p).split("://", 1)[-1].rstrip("/")  # walk may drop the scheme  # noqa: E731
    base = bare(path(root)) + "/"
    return sorted(f"{bare(d)}/{n}".removeprefix(base) for d, _, names in path(root).walk() for n in names)


def open(p: PathLike, mode: str = "r", encoding: str | None = None):  # noqa: A001 - the builtin's name on purpose
    """A file object for a local path or a URI (text modes default to UTF-8)."""
    if not is_remote(p):
        return builtins.open(p, mode, encoding=encoding if "b" in mode else (encoding or "utf-8"))
    f = path(p).open(mode)
    # fsspec's files lack readline(size), which the bounded line readers use: a standard buffer gives it
    return io.BufferedReader(f) if mode == "rb" and not isinstance(f, io.BufferedReader) else f


def read_text(p: PathLike) -> str:
    with open(p) as f:
        return f.read()


def read_bytes(p: PathLike) -> bytes:
    with open(p, "rb") as f:
        return f.read()


def write_bytes(p: PathLike, data: bytes, *, fsync: bool = False) -> None:
    """Write a whole file atomically: readers see the old contents or the new, never a part."""
    if is_remote(p):
        path(p).write_bytes(data)
        return
    tmp = f"{os.fspath(p)}.tmp"
    with builtins.open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, p)


def write_text(p: PathLike, text: str, *, fsync: bool = False) -> None:
    write_bytes(p, text.encode("utf-8"), fsync=fsync)


def create_exclusive(p: PathLike, text: str) -> None:
    """Create a file that must not exist yet (FileExistsError if it does). Locally one O_EXCL open; on an object
    store, which epath gives no create-if-absent precondition, a check then a write: a lock there keeps a second
    run out unless both start within the same moment."""
    if is_remote(p):
        if path(p).exists():
            raise FileExistsError(p)
        path(p).write_text(text)
        return
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def append_text(p: PathLike, text: str) -> None:
    """Append to a log. Objects cannot be appended to, so a remote log is rewritten whole (logs stay small)."""
    if not is_remote(p):
        with builtins.open(p, "a", encoding="utf-8") as f:
            f.write(text)
        return
    q = path(p)
    q.write_text((q.read_text() if q.exists() else "") + text)


def move(src: PathLike, dst: PathLike) -> None:
    """Move a file or a directory (a copy and a delete on an object store)."""
    if not is_remote(src) and not is_remote(dst):
        shutil.move(os.fspath(src), os.fspath(dst))
        return
    upload_tree(src, dst) if not is_remote(src) else _copy_remote(src, dst)
    s = path(src)
    s.rmtree() if s.is_dir() else s.unlink()


def _copy_remote(src: PathLike, dst: PathLike) -> None:
    s, d = path(src), path(dst)
    if not s.is_dir():
        d.parent.mkdir(parents=True, exist_ok=True)
        d.write_bytes(s.read_bytes())
        return
    for rel in walk_files(src):
        _copy_remote(s / rel, d / rel)


def upload_tree(local: PathLike, dst: PathLike) -> None:
    """Copy a local file or directory to dst (a URI or a local path), keeping its layout."""
    if not is_remote(dst):
        if os.path.isdir(local):
            shutil.copytree(local, dst, dirs_exist_ok=True)
        else:
            shutil.copyfile(local, dst)
        return
    d = path(dst)
    if not os.path.isdir(local):
        with builtins.open(local, "rb") as f:
            d.write_bytes(f.read())
        return
    d.mkdir(parents=True, exist_ok=True)
    for rel in walk_files(local):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        with builtins.open(os.path.join(local, rel), "rb") as f:
            (d / rel).write_bytes(f.read())


@contextlib.contextmanager
def local_dir(dst: PathLike) -> Iterator[str]:
    """A local directory to write into, for libraries that need one: dst itself when it is local, otherwise a
    staging directory uploaded to dst when the block finishes without an error (nothing is uploaded after one)."""
    if not is_remote(dst):
        os.makedirs(dst, exist_ok=True)
        yield os.fspath(dst)
        return
    with tempfile.TemporaryDirectory(prefix="kdjax-upload-") as tmp:
        yield tmp
        upload_tree(tmp, dst)


def local_mirror(src: PathLike) -> str:
    """src itself when it is local; for a URI, a local copy of the file or directory made once per machine (in the
    temporary directory, keyed by the URI) and reused while the URI holds the same files of the same sizes: for
    readers that open local files only and read a dataset many times (array_record shards, TFDS directories)."""
    if not is_remote(src):
        return os.fspath(src)
    import hashlib
    import json

    key = hashlib.sha1(os.fspath(src).encode()).hexdigest()[:16]
    root = os.path.join(tempfile.gettempdir(), "kdjax-mirror", key)
    local = os.path.join(root, path(src).name or "data")
    files = walk_files(src) if isdir(src) else [""]
    listing = json.dumps([[f, getsize(join(src, f) if f else src)] for f in files])
    marker = os.path.join(root, ".complete")  # written last: what the copy holds
    if os.path.isfile(marker) and builtins.open(marker).read() == listing:
        return local
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    with local_copy(src) as copied:
        shutil.move(copied, local)
    with builtins.open(marker, "w") as f:
        f.write(listing)
    return local


@contextlib.contextmanager
def local_copy(src: PathLike) -> Iterator[str]:
    """A local path holding src (a file or a directory), for libraries that read only local files: src itself
    when it is local, otherwise a downloaded copy removed afterwards."""
    if not is_remote(src):
        yield os.fspath(src)
        return
    s = path(src)
    with tempfile.TemporaryDirectory(prefix="kdjax-download-") as tmp:
        local = os.path.join(tmp, s.name or "file")
        if s.is_dir():
            for rel in walk_files(src):
                os.makedirs(os.path.dirname(os.path.join(local, rel)), exist_ok=True)
                with builtins.open(os.path.join(local, rel), "wb") as f:
                    f.write((s / rel).read_bytes())
        else:
            with builtins.open(local, "wb") as f:
                f.write(s.read_bytes())
        yield local
