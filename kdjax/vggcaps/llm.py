"""VggCaps' captioning module (thesis Figure 3.1, Appendix 3.7.3): a multimodal LLM writes a raw caption from
the video snapshot and the mel-spectrogram image (Listing 3.1), then refines it (Listing 3.2).

Any OpenAI-compatible chat-completions endpoint works (a hosted model, a local server): `ChatClient` posts
JSON with the standard library, retries what is worth retrying (429 and 5xx answers, timeouts, dropped
connections, malformed JSON) with exponential backoff that honours Retry-After, and gives up at once on
the rest (400, 401, 403, 404: retrying cannot fix them). `caption_items` runs items concurrently and keeps
one small JSON file per item, written atomically, so an interrupted build resumes without paying twice for
any item; failures are kept with their reason and not retried on resume unless asked.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

INPUT_PROMPT = """The two images are a video snapshot and an audio spectrum, categorized into {}. Write a caption \
that includes the visual and auditory elements that these images suggest :

[Rules]

1. Focus on audio-visual elements
2. Write with a rich vocabulary
3. Exclude anything other than captions

>>> Caption :"""

POST_PROMPT = """Revise the sentence below to a more general and descriptive sentence, and one that is \
appropriate for captioning images and audio:

[Rules]

1. Focus on the background sound element
2. Exclude hashtags (like "#peoplemarching")
3. Avoid captions that read like film titles.(like "A Joyful Heart's Muffled Cough-terlude ~~~")
4. Write with a rich vocabulary
5. Exclude anything other than captions

[example]

1. A sea of determined faces marches in unison, their boots thundering in harmony across the ground, echoing \
the orchestrated rhythm of military discipline and resolve.
2. Amidst the whispering reeds, the pheasant's crowing breaks the silence of the meadow, a resonant call that \
echoes the wild heart of nature.
3. Explosive bursts light up the night, resonating with the jubilant cracking and booming of celebratory \
fireworks.

>>> Caption :"""

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class LLMError(RuntimeError):
    """A request that failed for good; `reason` is short and goes to the build's manifest."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass
class ChatClient:
    base_url: str  # e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1
    model: str
    api_key: str = ""
    timeout: float = 60.0
    max_retries: int = 5
    backoff: float = 1.0  # first wait in seconds; doubles per retry, with jitter
    max_backoff: float = 60.0
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_env(cls, base_url: str = "", model: str = "", api_key: str = "", **kw) -> "ChatClient":
        """Settings from the arguments, else OPENAI_BASE_URL, VGGCAPS_MODEL and OPENAI_API_KEY."""
        base_url = base_url or os.environ.get("OPENAI_BASE_URL", "")
        model = model or os.environ.get("VGGCAPS_MODEL", "")
        if not base_url or not model:
            raise LLMError("set the endpoint and model (--base_url/--model, or OPENAI_BASE_URL and VGGCAPS_MODEL)")
        return cls(base_url.rstrip("/"), model, api_key or os.environ.get("OPENAI_API_KEY", ""), **kw)

    def complete(self, content: str | list[dict[str, Any]]) -> str:
        """One user message -> the assistant's text."""
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": content}]}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            wait = None
            try:
                req = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, headers=headers)
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                try:
                    return _content(json.loads(raw))
                except (ValueError, KeyError, IndexError, TypeError) as e:
                    last = f"malformed response ({type(e).__name__})"
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
                if e.code not in RETRY_STATUS:
                    raise LLMError(last) from e
                after = e.headers.get("Retry-After") if e.headers else None
                wait = float(after) if after and after.replace(".", "", 1).isdigit() else None
            except (TimeoutError, socket.timeout):
                last = f"timeout after {self.timeout:g} s"
            except urllib.error.URLError as e:
                if isinstance(e.reason, (TimeoutError, socket.timeout)):
                    last = f"timeout after {self.timeout:g} s"
                else:
                    last = f"connection failed ({e.reason})"
            except (ConnectionError, OSError) as e:
                last = f"connection failed ({type(e).__name__})"
            if attempt == self.max_retries:
                break
            if wait is None:
                wait = min(self.backoff * 2 ** attempt, self.max_backoff) * (0.5 + random.random() / 2)
            self.sleep(wait)
        raise LLMError(f"{last} after {self.max_retries + 1} attempts")


def _content(response: dict) -> str:
    choice = response["choices"][0]
    text = choice["message"]["content"]
    if choice.get("finish_reason") == "content_filter" or not isinstance(text, str) or not text.strip():
        raise LLMError("refused (content filter or empty answer)")
    return text.strip()


def image_part(png: bytes) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}}


def raw_caption(client: ChatClient, snapshot_png: bytes, mel_png: bytes, category: str) -> str:
    """The caption of both images (Listing 3.1, the category filled in)."""
    return client.complete([{"type": "text", "text": INPUT_PROMPT.format(category)}, image_part(snapshot_png),
                            image_part(mel_png)])


def refine(client: ChatClient, raw: str) -> str:
    """The raw caption revised by the post-processing prompt (Listing 3.2)."""
    return client.complete(f"{POST_PROMPT}\n\n{raw}")


def _write_json(path: str, obj: dict) -> None:
    tmp = f"{path}.tmp-{os.getpid()}-{id(obj)}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False)
    os.replace(tmp, path)


def caption_items(client: ChatClient, items: Sequence[dict[str, Any]], cache_dir: str, concurrency: int = 4,
                  retry_failed: bool = False) -> dict[str, dict[str, str]]:
    """Caption every item ({"id", "snapshot": png bytes or a callable giving them, "mel": likewise,
    "category"}) at most `concurrency` at a time. Returns id -> {"raw", "refined"}, or with "error" (the
    reason) when a request failed for good. Each answer is kept in <cache_dir>/<id>.json as soon as it
    arrives (the raw caption before its refinement), and later calls reuse it instead of asking again;
    failures are asked again only with `retry_failed`."""
    os.makedirs(cache_dir, exist_ok=True)

    def path(item_id: str) -> str:
        return os.path.join(cache_dir, item_id.replace("/", "_") + ".json")

    def one(item: dict[str, Any]) -> tuple[str, dict[str, str]]:
        p = path(item["id"])
        out: dict[str, str] = {}
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                out = json.load(f)
            if "refined" in out or ("error" in out and not retry_failed):
                return item["id"], out
            out.pop("error", None)
        load = lambda v: v() if callable(v) else v
        try:
            if "raw" not in out:  # saved at once: an interrupted build never pays for it again
                out["raw"] = raw_caption(client, load(item["snapshot"]), load(item["mel"]), item["category"])
                _write_json(p, out)
            out["refined"] = refine(client, out["raw"])
        except LLMError as e:
            out["error"] = e.reason
        _write_json(p, out)
        return item["id"], out

    from kdjax.train.logging import progress_bar

    out: dict[str, dict[str, str]] = {}
    with ThreadPoolExecutor(max_workers=max(int(concurrency), 1)) as pool, \
            progress_bar(len(items), "vggcaps: captions", "item") as bar:
        for item_id, answer in pool.map(one, items):
            out[item_id] = answer
            bar.update(1)
    return out
