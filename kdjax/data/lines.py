"""Users' text files read line by line in bounded memory, each problem named by file and line.

Every reader of a user's text file (notes, manifests, caption files) goes through `read_lines`: a line longer
than the limit is never held whole (its rest is read and dropped in chunks), and bytes that are not UTF-8 are
reported with the line and byte where they are, instead of a UnicodeDecodeError that names neither.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from kdjax import paths
from kdjax.errors import InputError

DEFAULT_MAX_LINE_BYTES = 4 << 20  # generous for any one note, caption or manifest row
_CHUNK = 1 << 20


def read_lines(path: str, max_bytes: int = DEFAULT_MAX_LINE_BYTES, *, limit_name: str = "the line limit"
               ) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text, None) for each line (newline stripped), or (line number, None, problem) for a line that
    is too long or not UTF-8. `limit_name` names the setting that raises `max_bytes`, for the message."""
    if not paths.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    with paths.open(path, "rb") as f:
        n = 0
        while raw := f.readline(max_bytes + 1):
            n += 1
            if len(raw) > max_bytes and not raw.endswith(b"\n"):
                size = len(raw)
                while (rest := f.readline(_CHUNK)) and not rest.endswith(b"\n"):
                    size += len(rest)
                size += len(rest)
                yield n, None, f"line of {size} bytes is longer than {max_bytes} ({limit_name})"
                continue
            try:
                text = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                yield n, None, f"not UTF-8 ({e.reason} at byte {e.start} of the line)"
                continue
            yield n, text.rstrip("\r\n"), None


def strict_lines(path: str, max_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """(line number, text); the first bad line is an InputError naming file and line."""
    for n, text, problem in read_lines(path, max_bytes):
        if problem is not None:
            raise InputError(f"{path}:{n}: {problem}")
        yield n, text


def csv_rows(path: str, max_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each CSV record, read through `strict_lines`; a malformed record (a quoted field
    never closed, or one longer than `max_bytes` over several lines) is an InputError naming file and line."""
    reader = csv.reader(text + "\n" for _, text in strict_lines(path, max_bytes))
    previous = csv.field_size_limit(max_bytes)  # a record may not outgrow a line's limit by spanning lines
    try:
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise InputError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
            yield reader.line_num, fields
    finally:
        csv.field_size_limit(previous)


def csv_dicts(path: str, max_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, {header: field}) of each record after the header row."""
    header = None
    for n, fields in csv_rows(path, max_bytes):
        if header is None:
            header = fields
            continue
        yield n, dict(zip(header, fields))
