"""Users' JSONL files: one object per line, errors naming file and line."""

from __future__ import annotations

import json
import os

from kdjax.errors import InputError


def read_rows(path: str, required: tuple[str, ...] = ()) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; InputError for a missing file, a line that is not
    a JSON object, or one lacking a `required` key."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: invalid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}:{n}: expected a JSON object")
            missing = [k for k in required if k not in row]
            if missing:
                raise InputError(f"{path}:{n}: missing {', '.join(missing)}")
            rows.append((n, row))
    return rows
