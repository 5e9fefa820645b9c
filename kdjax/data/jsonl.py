"""Users' JSONL files: one object per line, errors naming file and line."""

from __future__ import annotations

import json

from kdjax.data import lines
from kdjax.errors import InputError


def read_rows(path: str, required: tuple[str, ...] = (), max_line_bytes: int = lines.DEFAULT_MAX_LINE_BYTES
              ) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; InputError for a line that is too long, not UTF-8, not a
    JSON object, or lacking a `required` key; FileNotFoundError for a missing file."""
    rows = []
    for n, line in lines.strict_lines(path, max_line_bytes):
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
