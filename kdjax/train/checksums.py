"""A checksum manifest of a finished checkpoint directory, checked before it is restored.

Orbax (0.12) records no checksum of what it writes: a truncated or zeroed data file fails deep inside
tensorstore, and a flipped bit restores silently into altered parameters. After orbax has finalised a step,
`write` records every file's size and CRC-32 in `<step>/kdjax_checksums.json` (written atomically, last);
`verify` recomputes them. CRC-32 detects every single-bit flip and every burst of up to 32 bits, the damage
disks and copies cause, at several GB/s; it is no defence against deliberate tampering, which is not the threat.
"""

from __future__ import annotations

import json
import zlib

from kdjax import paths

MANIFEST = "kdjax_checksums.json"
_CHUNK = 4 << 20


def _crc(path: str) -> int:
    crc = 0
    with paths.open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _files(root: str) -> list[str]:
    return [p for p in paths.walk_files(root) if p != MANIFEST and not p.endswith(".tmp")]


def write(root: str) -> None:
    """Record the size and CRC-32 of every file below `root` (a finalised checkpoint step)."""
    manifest = {"format": 1, "files": {p: {"bytes": paths.getsize(paths.join(root, p)),
                                           "crc32": _crc(paths.join(root, p))} for p in _files(root)}}
    paths.write_text(paths.join(root, MANIFEST), json.dumps(manifest, indent=0, sort_keys=True), fsync=True)


def has_manifest(root: str) -> bool:
    return paths.isfile(paths.join(root, MANIFEST))


def verify(root: str) -> str | None:
    """None when every recorded file is there with its size and checksum; else what differs (the first few
    files named). A directory without a manifest cannot be verified: the caller decides (see has_manifest)."""
    try:
        with paths.open(paths.join(root, MANIFEST)) as f:
            files = json.load(f)["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"its checksum manifest {MANIFEST} is unreadable ({type(e).__name__})"
    problems = []
    for rel, want in files.items():
        path = paths.join(root, rel)
        if not paths.isfile(path):
            problems.append(f"{rel} is missing")
        elif paths.getsize(path) != want["bytes"]:
            problems.append(f"{rel} has {paths.getsize(path)} bytes, {want['bytes']} were written")
        elif _crc(path) != want["crc32"]:
            problems.append(f"{rel} does not match its checksum")
        if len(problems) == 3:
            problems.append("...")
            break
    return "; ".join(problems) or None
