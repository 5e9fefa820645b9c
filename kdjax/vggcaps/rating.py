"""Human evaluation of captions (thesis section 3.3, Figure 3.6): a local web page for Mean Opinion Score
ratings, and their aggregation.

    python -m kdjax.vggcaps rate --serve --data=vggcaps/ --db=ratings.sqlite [--items=100] [--port=8765]
    python -m kdjax.vggcaps rate --aggregate --db=ratings.sqlite --out=mos/

The page plays each sampled item's audio, shows its snapshot and caption, and takes a 1-5 score from a
named rater. Ratings live in SQLite on the server side, one row per (rater, item), committed before the
answer is sent: a reload or a server restart loses nothing, and a second submit of the same item by the same
rater replaces the first instead of counting twice. Rater names are case-folded ("Ann" and "ann " are one
rater); a score is an integer 1-5 (not 4.9, not true). The page serves only the sampled items' audio and
images, never the dataset's manifest or the ratings database, even when --db lies inside --data; it listens
on 127.0.0.1 (this machine) unless --host says otherwise.
"""

from __future__ import annotations

import html
import json
import mimetypes
import os
import random
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from kdjax.data import jsonl
from kdjax.errors import InputError


def sample_items(data_dir: str, n: int = 100, seed: int = 0, split: str = "test") -> list[dict[str, Any]]:
    """`n` items of a VggCaps directory's split (all of them if it has fewer), drawn with `seed`."""
    path = os.path.join(data_dir, "vggcaps.jsonl")
    if not os.path.isfile(path):
        raise InputError(f"{path}: missing (a directory written by `python -m kdjax.vggcaps build`)")
    rows = [row for _, row in jsonl.read_rows(path)]
    rows = [r for r in rows if r.get("split") == split] or rows
    rows.sort(key=lambda r: r["id"])
    return sorted(random.Random(seed).sample(rows, min(n, len(rows))), key=lambda r: r["id"])


def rater_name(name: str) -> str:
    """One rater, however the name is typed: whitespace collapsed, case-folded."""
    return " ".join(name.split()).casefold()


def parse_rating(body: Any) -> tuple[str, str, int]:
    """(rater, item, score) of a rating request, or ValueError: a score must be a JSON integer 1-5."""
    if not isinstance(body, dict) or not {"rater", "item", "score"} <= body.keys():
        raise ValueError("expected {rater, item, score}")
    rater, item, score = body["rater"], body["item"], body["score"]
    if not isinstance(rater, str) or not rater_name(rater):
        raise ValueError("rater must be a non-empty name")
    if not isinstance(item, str):
        raise ValueError("item must be an item id")
    # bool is an int in Python (true == 1); 4.9 would be truncated to 4 by int()
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise ValueError(f"score must be an integer 1-5, got {json.dumps(score)}")
    return rater_name(rater), item, score


_MEDIA = ("audio/", "video/", "image/")


class RatingStore:
    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS ratings (rater TEXT NOT NULL, item TEXT NOT NULL, "
                       "score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5), at REAL NOT NULL, "
                       "PRIMARY KEY (rater, item))")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def rate(self, rater: str, item: str, score: int) -> None:
        with self._lock, self._connect() as db:  # committed when the block ends, before the reply
            db.execute("INSERT INTO ratings VALUES (?, ?, ?, ?) ON CONFLICT (rater, item) DO UPDATE SET "
                       "score = excluded.score, at = excluded.at", (rater, item, int(score), time.time()))

    def of_rater(self, rater: str) -> dict[str, int]:
        with self._connect() as db:
            return dict(db.execute("SELECT item, score FROM ratings WHERE rater = ?", (rater,)).fetchall())

    def all(self) -> list[tuple[str, str, int]]:
        with self._connect() as db:
            return db.execute("SELECT rater, item, score FROM ratings ORDER BY rater, item").fetchall()


def aggregate(store: RatingStore) -> dict[str, Any]:
    """MOS: mean and standard deviation over all ratings, the 1-5 histogram, per-item means, rater count."""
    rows = store.all()
    if not rows:
        raise InputError(f"{store.path}: no ratings yet")
    scores = np.array([s for _, _, s in rows], float)
    per_item: dict[str, list[int]] = {}
    for _, item, s in rows:
        per_item.setdefault(item, []).append(s)
    return {"ratings": len(rows), "raters": len({r for r, _, _ in rows}), "items": len(per_item),
            "mos": float(scores.mean()), "std": float(scores.std()),
            "histogram": {str(k): int((scores == k).sum()) for k in range(1, 6)},
            "per_item": {k: float(np.mean(v)) for k, v in sorted(per_item.items())}}


def histogram_png(summary: dict[str, Any], path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.bar(list(summary["histogram"]), list(summary["histogram"].values()), color="C0")
    ax.set_xlabel("score")
    ax.set_ylabel("ratings")
    ax.set_title(f"MOS {summary['mos']:.2f} ± {summary['std']:.2f} ({summary['ratings']} ratings)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>VggCaps rating</title>
<style>body{font-family:sans-serif;max-width:720px;margin:2em auto}img{max-width:100%}
button.s{font-size:1.4em;margin:.2em;padding:.3em .8em}#done{color:green}</style></head><body>
<h1>Caption rating</h1>
<p>Rater: <input id="rater" placeholder="your name"> <button id="start">start</button></p>
<div id="item" hidden><p id="progress"></p><audio id="audio" controls></audio><br><img id="image" alt="snapshot">
<p id="caption"></p><p>How well does the caption describe the audio (1 = badly, 5 = very well)?</p>
<div id="scores"></div></div><p id="done" hidden>All items rated. Thank you!</p>
<script>
let items = [], rated = {}, i = 0, rater = "";
async function load() {
  rater = document.getElementById("rater").value.trim(); if (!rater) return;
  items = await (await fetch("api/items")).json();
  rated = await (await fetch("api/ratings?rater=" + encodeURIComponent(rater))).json();
  i = 0; next();
}
function next() {
  while (i < items.length && rated[items[i].id]) i++;
  const done = i >= items.length;
  document.getElementById("item").hidden = done; document.getElementById("done").hidden = !done;
  if (done) return;
  const it = items[i];
  document.getElementById("progress").textContent = `${Object.keys(rated).length + 1} / ${items.length}: ${it.id}`;
  document.getElementById("audio").src = "media/" + it.audio;
  document.getElementById("image").src = "media/" + it.image;
  document.getElementById("caption").textContent = it.caption;
}
async function rate(score) {
  const it = items[i];
  const r = await fetch("api/rate", {method: "POST", headers: {"Content-Type": "application/json"},
                                     body: JSON.stringify({rater: rater, item: it.id, score: score})});
  if (r.ok) { rated[it.id] = score; next(); }
}
for (let s = 1; s <= 5; s++) {
  const b = document.createElement("button"); b.className = "s"; b.textContent = s; b.id = "score" + s;
  b.onclick = () => rate(s); document.getElementById("scores").appendChild(b);
}
document.getElementById("start").onclick = load;
</script></body></html>"""


def make_server(data_dir: str, db_path: str, items: list[dict[str, Any]], host: str = "127.0.0.1",
                port: int = 0) -> ThreadingHTTPServer:
    store = RatingStore(db_path)
    root = os.path.realpath(data_dir)
    by_id = {r["id"]: r for r in items}
    # Only the sampled items' own media files are served: not the manifest, not the ratings database (which may
    # sit inside the data directory), nothing else under it.
    media = {os.path.realpath(os.path.join(root, r[k])) for r in items for k in ("audio", "image") if r.get(k)}
    public = [{k: r[k] for k in ("id", "audio", "image", "caption")} for r in items]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, code: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj: Any) -> None:
            self._send(code, json.dumps(obj).encode())

        def do_GET(self):
            url = urlparse(self.path)
            if url.path in ("/", "/index.html"):
                return self._send(200, PAGE.encode(), "text/html; charset=utf-8")
            if url.path == "/api/items":
                return self._json(200, public)
            if url.path == "/api/ratings":
                rater = parse_qs(url.query).get("rater", [""])[0]
                return self._json(200, store.of_rater(rater_name(rater)))
            if url.path.startswith("/media/"):
                path = os.path.realpath(os.path.join(root, unquote(url.path[len("/media/"):])))
                kind = mimetypes.guess_type(path)[0] or ""
                if path not in media or not kind.startswith(_MEDIA) or not os.path.isfile(path):
                    return self._json(404, {"error": "no such media file"})
                with open(path, "rb") as f:
                    return self._send(200, f.read(), kind)
            return self._json(404, {"error": html.escape(url.path)})

        def do_POST(self):
            if urlparse(self.path).path != "/api/rate":
                return self._json(404, {"error": "not found"})
            try:
                rater, item, score = parse_rating(json.loads(self.rfile.read(int(self.headers.get("Content-Length",
                                                                                                    0)))))
            except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                return self._json(400, {"error": str(e)})
            if item not in by_id:
                return self._json(400, {"error": f"unknown item {item!r}"})
            store.rate(rater, item, score)
            return self._json(200, {"ok": True})

    server = ThreadingHTTPServer((host, port), Handler)
    server.store = store  # type: ignore[attr-defined]
    return server
