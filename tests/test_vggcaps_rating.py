"""The MOS rating server (kdjax/vggcaps/rating.py) over HTTP: items, media, durable ratings that survive a
restart, no double counting, bad requests refused; then the aggregate and its histogram."""

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from kdjax.vggcaps import rating
from tests import runs


def _data(root, n=5):
    (root / "audio").mkdir(parents=True)
    (root / "images").mkdir()
    rows = []
    for i in range(n):
        (root / "audio" / f"v{i}.flac").write_bytes(b"fLaC" + bytes([i]))
        (root / "images" / f"v{i}.jpg").write_bytes(b"\xff\xd8\xff" + bytes([i]))
        rows.append({"id": f"v{i}", "audio": f"audio/v{i}.flac", "image": f"images/v{i}.jpg",
                     "caption": f"caption {i}", "split": "test" if i < 4 else "train"})
    (root / "vggcaps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _serve(data, db, items):
    server = rating.make_server(str(data), str(db), items)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def _post(url, obj):
    req = urllib.request.Request(url, data=json.dumps(obj).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_rating_server_is_durable_and_counts_once(tmp_path):
    data, db = tmp_path / "vggcaps", tmp_path / "ratings.sqlite"
    _data(data)
    items = rating.sample_items(str(data), n=3, seed=1)
    assert len(items) == 3 and all(r["split"] == "test" for r in items)  # drawn from the test split
    server, url = _serve(data, db, items)
    status, page = _get(url + "/")
    assert status == 200 and b"Caption rating" in page and b"score" in page
    listed = json.loads(_get(url + "/api/items")[1])
    assert [r["id"] for r in listed] == [r["id"] for r in items]
    assert _get(url + "/media/" + listed[0]["audio"])[1].startswith(b"fLaC")
    with pytest.raises(urllib.error.HTTPError):
        _get(url + "/media/../ratings.sqlite")  # nothing outside the data directory
    a, b = listed[0]["id"], listed[1]["id"]
    assert _post(url + "/api/rate", {"rater": "ann", "item": a, "score": 4}) == 200
    assert _post(url + "/api/rate", {"rater": "ann", "item": a, "score": 5}) == 200  # a second submit replaces
    assert _post(url + "/api/rate", {"rater": "bob", "item": a, "score": 2}) == 200
    assert _post(url + "/api/rate", {"rater": "bob", "item": "v4", "score": 3}) == 400  # not a sampled item
    assert _post(url + "/api/rate", {"rater": "bob", "item": b, "score": 6}) == 400
    assert _post(url + "/api/rate", {"rater": "", "item": b, "score": 3}) == 400
    assert _post(url + "/api/rate", {"item": b}) == 400
    server.shutdown()
    server.server_close()

    server, url = _serve(data, db, items)  # restarted: the ratings are still there
    assert json.loads(_get(url + "/api/ratings?rater=ann")[1]) == {a: 5}
    assert _post(url + "/api/rate", {"rater": "ann", "item": b, "score": 3}) == 200
    server.shutdown()
    server.server_close()

    out = tmp_path / "mos"
    p = subprocess.run([sys.executable, "-m", "kdjax.vggcaps", "rate", "--aggregate", f"--db={db}", f"--out={out}"],
                       env=runs.env(1), cwd=runs.REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.load(open(out / "mos.json"))
    assert (summary["ratings"], summary["raters"], summary["items"]) == (3, 2, 2)
    assert summary["mos"] == pytest.approx((5 + 2 + 3) / 3)
    assert summary["histogram"] == {"1": 0, "2": 1, "3": 1, "4": 0, "5": 1}
    assert summary["per_item"] == {a: 3.5, b: 3.0}
    assert "MOS 3.33 ± 1.25 over 3 ratings" in p.stdout
    assert (out / "mos_histogram.png").read_bytes()[:4] == b"\x89PNG"


def test_only_the_sampled_media_are_served_scores_are_integers_and_raters_are_case_folded(tmp_path):
    """The database inside the data directory, the manifest and unsampled clips are not served; `true` and 4.9 are
    not scores; "Ann" and " ann" are one rater; --help states where the page listens."""
    data = tmp_path / "vggcaps"
    _data(data)
    db = data / "ratings.sqlite"  # --db inside --data
    items = rating.sample_items(str(data), n=3, seed=1)
    server, url = _serve(data, db, items)
    try:
        assert _get(url + "/media/" + items[0]["image"])[1].startswith(b"\xff\xd8")
        assert _post(url + "/api/rate", {"rater": "Ann", "item": items[0]["id"], "score": 4}) == 200
        unsampled = next(f"audio/{i}.flac" for i in ("v0", "v1", "v2", "v3", "v4")
                         if i not in {r["id"] for r in items})
        for name in ("vggcaps.jsonl", "ratings.sqlite", "ratings.sqlite-wal", unsampled, "audio/"):
            with pytest.raises(urllib.error.HTTPError) as err:
                _get(url + "/media/" + name)
            assert err.value.code == 404, name
        b = items[1]["id"]
        for bad in (True, 4.9, "4", None, 0, 6):
            assert _post(url + "/api/rate", {"rater": "ann", "item": b, "score": bad}) == 400, bad
        assert _post(url + "/api/rate", {"rater": "  ANN ", "item": b, "score": 2}) == 200
        assert _post(url + "/api/rate", {"rater": "ann", "item": items[0]["id"], "score": 5}) == 200  # replaces 4
        assert json.loads(_get(url + "/api/ratings?rater=Ann")[1]) == {items[0]["id"]: 5, b: 2}
    finally:
        server.shutdown()
        server.server_close()
    assert rating.aggregate(rating.RatingStore(str(db)))["raters"] == 1
    p = subprocess.run([sys.executable, "-m", "kdjax.vggcaps", "rate", "--help"], env=runs.env(1), cwd=runs.REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "default: 127.0.0.1" in " ".join(p.stdout.split()), p.stdout


def test_aggregate_of_nothing_and_missing_dataset(tmp_path):
    with pytest.raises(rating.InputError, match="no ratings yet"):
        rating.aggregate(rating.RatingStore(str(tmp_path / "empty.sqlite")))
    with pytest.raises(rating.InputError, match="vggcaps.jsonl: missing"):
        rating.sample_items(str(tmp_path))


def test_rating_in_a_real_browser(tmp_path):
    """Debian's headless Chromium, driven through chromedriver: a rater rates items by clicking, reloads
    the page (it resumes at the first unrated item), the server restarts, and the stored ratings and the
    aggregate are exactly the clicks."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    data, db = tmp_path / "vggcaps", tmp_path / "ratings.sqlite"
    _data(data)
    items = rating.sample_items(str(data), n=4)
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    wait = WebDriverWait(driver, 20)

    def page(d):
        """What the page shows now, without waiting: "done", the shown item's id, or None (still loading).
        Waits poll this; none nests a wait of its own, which would block past the switch to "done"."""
        if d.find_element(By.ID, "done").is_displayed():
            return "done"
        if d.find_element(By.ID, "caption").is_displayed():
            return d.find_element(By.ID, "progress").text.split(": ")[1]
        return None

    def shown_id():
        return wait.until(lambda d: page(d) not in (None, "done") and page(d))

    def rate(score):
        before = shown_id()
        driver.find_element(By.ID, f"score{score}").click()
        wait.until(lambda d: page(d) not in (None, before))  # the next item, or "done" after the last
        return before

    def start(url):
        driver.get(url)
        driver.find_element(By.ID, "rater").send_keys("carol")
        driver.find_element(By.ID, "start").click()

    try:
        server, url = _serve(data, db, items)
        start(url + "/")
        first = shown_id()
        assert driver.find_element(By.ID, "caption").text == next(r["caption"] for r in items if r["id"] == first)
        assert driver.find_element(By.ID, "image").get_attribute("src").endswith(f"media/images/{first}.jpg")
        clicked = {rate(5): 5, rate(2): 2}
        driver.refresh()  # a reload forgets nothing: the page continues with the third item
        start(url + "/")
        third = shown_id()
        assert third not in clicked
        server.shutdown()
        server.server_close()
        server, url = _serve(data, db, items)  # and neither does a restarted server
        start(url + "/")
        assert shown_id() == third
        clicked[rate(4)] = 4
        clicked[rate(1)] = 1
        assert page(driver) == "done"
        server.shutdown()
        server.server_close()
    finally:
        driver.quit()
    store = rating.RatingStore(str(db))
    assert store.of_rater("carol") == clicked and len(clicked) == 4
    summary = rating.aggregate(store)
    assert summary["mos"] == pytest.approx(3.0) and summary["histogram"] == {"1": 1, "2": 1, "3": 0, "4": 1,
                                                                              "5": 1}
