"""VggCaps' captioning client against a fake OpenAI-compatible server on loopback that injects 429s, 500s,
timeouts, malformed JSON, refusals and a 403; and the per-item cache that makes a build resumable."""

import json

import pytest

from kdjax.vggcaps import llm


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


def test_a_raw_caption_is_never_paid_twice(server, tmp_path):
    """The refinement fails for good (403) after the raw caption arrived: the raw caption is kept, and the
    retry asks only for the refinement."""
    client = llm.ChatClient(server.url, "fake-4o", api_key="sk-test", timeout=2, max_retries=1, sleep=lambda s: None)
    (item,) = _items(["refine denied"])
    out = llm.caption_items(client, [item], str(tmp_path / "cache"))
    assert out["vid0"] == {"raw": "raw caption of refine denied", "error": "HTTP 403"}
    assert server.calls["ok"] == 1 and server.calls["refine denied (refine)"] == 1
    out = llm.caption_items(client, [item], str(tmp_path / "cache"), retry_failed=True)
    assert out["vid0"] == {"raw": "raw caption of refine denied",
                           "refined": "refined raw caption of refine denied"}
    assert server.calls["ok"] == 1 and server.calls["refine denied (refine)"] == 2  # no second raw request


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
