"""A Google Cloud Storage server on localhost (gcp-storage-emulator in memory, with the preconditions tensorstore
needs: tests/gcs_server.py) that both of kdjax's routes to a bucket reach offline: etils.epath through gcsfs
(STORAGE_EMULATOR_HOST) and orbax's tensorstore (TENSORSTORE_GCS_HTTP_URL). Subprocesses get the variables from
`variables()`."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Iterator

BUCKET = "kdjax-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def variables(url: str) -> dict[str, str]:
    return {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
            # no credentials are looked for: neither a metadata server nor a login
            "NO_GCE_CHECK": "True", "GCE_METADATA_HOST": "127.0.0.1:1",
            # gcsfs's zonal-bucket probe asks an API the emulator lacks (a warning on every call)
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}


@contextlib.contextmanager
def running() -> Iterator[str]:
    """Start the server with an empty bucket; yields its URL with the variables set in this process."""
    url = f"http://127.0.0.1:{_free_port()}"
    port = url.rsplit(":", 1)[1]
    proc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "gcs_server.py"), port, BUCKET],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {k: os.environ.get(k) for k in variables(url)}
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b/{BUCKET}", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("the GCS emulator exited at start")
                time.sleep(0.1)
        else:
            raise RuntimeError("the GCS emulator did not start in 10 s")
        os.environ.update(variables(url))
        import fsspec

        fsspec.filesystem("gs").clear_instance_cache()  # gcsfs reads the emulator's address when it is made
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
