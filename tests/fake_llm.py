"""A fake OpenAI-compatible chat-completions server on loopback: deterministic captions, and faults (429,
5xx, timeouts, malformed JSON, refusals, 403) for requests whose text names a category in FAULTS."""

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# category -> the faults its first requests meet (then it is answered); POST_FAULTS: only its refinement
POST_FAULTS = {"refine denied": ["403"]}
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
                refining = isinstance(body["messages"][0]["content"], str)
                key = next((k for k in FAULTS if k in text), None) or next(
                    (k + " (refine)" for k in POST_FAULTS if k in text and refining), "ok")
                with server.lock:
                    n = server.calls[key]
                    server.calls[key] += 1
                    server.bodies.append(body)
                faults = FAULTS.get(key, POST_FAULTS.get(key.removesuffix(" (refine)"), []))
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
