"""VggCaps' captioning client against a fake OpenAI-compatible server on loopback that injects 429s, 500s,
timeouts, malformed JSON, refusals and a 403; and the per-item cache that makes a build resumable."""

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kdjax.vggcaps import llm

# category -> the faults its first requests meet (then it is answered)
FAULTS = {"rate limited": ["429"], "flaky": ["500", "502"], "slow": ["sleep"], "garbled": ["garbage"],
          "refused": ["refuse"] * 99, "forbidden": ["403"] * 99}


class FakeServer:
    def __init__(self):
        self.calls: Counter = Counter()
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert self.path == "/v1/chat/completions" and self.headers["Authorization"] == "Bearer sk-test"
                text = json.dumps(body["messages"])
                key = next((k for k in FAULTS if k in text), "ok")
                with server.lock:
                    n = server.calls[key]
                    server.calls[key] += 1
                    server.bodies.append(body)
                faults = FAULTS.get(key, [])
                fault = faults[n] if n < len(faults) else None
                if fault in ("429", "500", "502", "403"):
                    self.send_response(int(fault))
                    if fault == "429":
                        self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                if fault == "sleep":
                    time.sleep(1.0)  # beyond the client's timeout
                content = body["messages"][0]["content"]
                if isinstance(content, list):  # the input prompt with its two images
                    category = content[0]["text"].split("categorized into ")[1].split(". Write")[0]
                    answer = f"raw caption of {category}"
                else:  # the post prompt around the raw caption
                    answer = "refined " + content.rsplit("\n\n", 1)[1]
                payload = {"choices": [{"message": {"role": "assistant", "content": answer},
                                        "finish_reason": "content_filter" if fault == "refuse" else "stop"}]}
                data = b"{not json" if fault == "garbage" else json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


def _items(categories):
    png = b"\x89PNG\r\n\x1a\nfake"
    return [{"id": f"vid{i}", "snapshot": png, "mel": lambda: png, "category": c} for i, c in enumerate(categories)]


def test_faults_are_retried_or_recorded_and_nothing_is_paid_twice(server, tmp_path):
    waits = []
    client = llm.ChatClient(server.url, "fake-4o", api_key="sk-test", timeout=0.5, max_retries=3, backoff=0.01,
                            sleep=waits.append)
    cats = ["dog barking", "rate limited", "flaky", "slow", "garbled", "refused", "forbidden"]
    out = llm.caption_items(client, _items(cats), str(tmp_path / "cache"), concurrency=3)
    assert out["vid0"] == {"raw": "raw caption of dog barking", "refined": "refined raw caption of dog barking"}
    for i in (1, 2, 3, 4):  # 429 (Retry-After: 0), 500 then 502, a timeout, malformed JSON: all recovered
        assert out[f"vid{i}"]["refined"] == f"refined raw caption of {cats[i]}", out[f"vid{i}"]
    assert out["vid5"] == {"error": "refused (content filter or empty answer)"}
    assert out["vid6"] == {"error": "HTTP 403"}
    assert server.calls["forbidden"] == 1  # not retried: it cannot succeed
    assert server.calls["flaky"] == 4 and server.calls["rate limited"] == 3  # (raw: faults + 1) + refine
    assert 0.0 in waits  # Retry-After honoured
    # the request carries Listing 3.1 with the category and both images as data URLs
    first = next(b for b in server.bodies if "dog barking" in json.dumps(b) and isinstance(
        b["messages"][0]["content"], list))
    parts = first["messages"][0]["content"]
    assert parts[0]["text"].startswith("The two images are a video snapshot and an audio spectrum, categorized "
                                       "into dog barking.") and parts[0]["text"].endswith(">>> Caption :")
    assert [p["image_url"]["url"][:22] for p in parts[1:]] == ["data:image/png;base64,"] * 2
    assert first["model"] == "fake-4o"

    # resumed: every item comes from the cache, the server is not asked again
    before = sum(server.calls.values())
    again = llm.caption_items(client, _items(cats), str(tmp_path / "cache"), concurrency=3)
    assert again == out and sum(server.calls.values()) == before
    # asked to retry failures: only the two failed items go out again
    llm.caption_items(client, _items(cats), str(tmp_path / "cache"), retry_failed=True)
    assert sum(server.calls.values()) - before == 2
    assert server.calls["refused"] == server.calls["forbidden"] == 2  # a refusal is an answer: not retried


def test_unreachable_endpoint_and_missing_settings(tmp_path, monkeypatch):
    client = llm.ChatClient("http://127.0.0.1:9/v1", "m", timeout=0.5, max_retries=1, sleep=lambda s: None)
    with pytest.raises(llm.LLMError, match="connection failed .* after 2 attempts"):
        client.complete("hello")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("VGGCAPS_MODEL", raising=False)
    with pytest.raises(llm.LLMError, match="OPENAI_BASE_URL and VGGCAPS_MODEL"):
        llm.ChatClient.from_env()
    monkeypatch.setenv("OPENAI_BASE_URL", "http://h/v1/")
    monkeypatch.setenv("VGGCAPS_MODEL", "gpt-4o")
    c = llm.ChatClient.from_env()
    assert (c.base_url, c.model) == ("http://h/v1", "gpt-4o")
