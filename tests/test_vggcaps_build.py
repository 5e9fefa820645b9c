"""`python -m kdjax.vggcaps build` end to end: videos made here (frames whose grey level tells the second, a
tone), a VggSound CSV, a fake OpenAI-compatible server on loopback with faults; then the array_record dataset
Multi2Cap reads, and a resumed build that asks the server nothing."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from PIL import Image

from kdjax.vggcaps import build as vb
from tests import runs, videos


def _dataset(tmp_path):
    vdir = tmp_path / "video"
    vdir.mkdir()
    rows = [("clip", 0, "dog barking", 10.0, True),        # a 10-s VggSound clip: snapshot at 5 s
            ("long", 4, "rate limited", 20.0, True),       # the full video: segment [4, 14), snapshot at 9 s
            ("mute", 0, "playing sitar", 10.0, False),     # no audio stream
            ("short", 0, "sheep bleating", 3.0, True),      # 3 s of audio: too short
            ("refuse", 0, "refused", 10.0, True),          # the API refuses
            ("flaky", 0, "flaky", 10.0, True),             # 500 then 502, then answered
            ("slow", 0, "slow", 10.0, True),               # a timeout, then answered
            ("garbled", 0, "garbled", 10.0, True)]         # malformed JSON, then answered
    for vid, start, _, seconds, audio in rows:
        name = f"{vid}_{start:06d}.mp4" if vid != "long" else f"{vid}.mp4"
        videos.write(str(vdir / name), seconds, audio=audio)
    csv = tmp_path / "vggsound.csv"
    csv.write_text("".join(f"{v},{s},{label},train\n" for v, s, label, _, _ in rows) + "missing,0,cat purring,test\n")
    return vdir, csv


def test_build_resume_and_tfds(server, tmp_path):
    vdir, csv = _dataset(tmp_path)
    out, tfds_dir = tmp_path / "vggcaps", tmp_path / "tfds"
    cmd = [sys.executable, "-m", "kdjax.vggcaps", "build", f"--videos={vdir}", f"--csv={csv}", f"--out={out}",
           f"--base_url={server.url}", "--model=fake-4o", "--api_key=sk-test", "--timeout=0.5", "--concurrency=2",
           f"--tfds_dir={tfds_dir}"]
    p = subprocess.run(cmd, env=runs.env(1), cwd=runs.REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    manifest = json.load(open(out / "manifest.json"))
    assert (manifest["rows"], manifest["items"], manifest["train"], manifest["test"]) == (9, 5, 4, 1)
    reasons = {f["id"]: f["reason"] for f in manifest["failures"]}
    assert reasons == {"missing_000000": "no video file", "mute_000000": "no audio stream",
                       "short_000000": "too short: 3.0 s of audio around the snapshot (need 5)",
                       "refuse_000000": "captioning: refused (content filter or empty answer)"}
    assert manifest["left_out_by_reason"] == {"no video file": 1, "no audio stream": 1, "too short": 1,
                                              "captioning": 1}
    rows = {r["id"]: r for r in map(json.loads, open(out / "vggcaps.jsonl"))}
    assert set(rows) == {"clip_000000", "long_000004", "flaky_000000", "slow_000000", "garbled_000000"}
    assert sorted(r["split"] for r in rows.values()) == ["test"] + ["train"] * 4
    for k in ("flaky", "slow", "garbled"):  # every fault recovered by a retry
        assert rows[f"{k}_000000"]["caption"] == f"refined raw caption of {k}"
    clip, long = rows["clip_000000"], rows["long_000004"]
    assert clip["caption"] == "refined raw caption of dog barking" and clip["raw_caption"] == "raw caption of dog barking"
    assert long["category"] == "rate limited"  # a 429 on the way, retried
    # the snapshot is the frame at the segment's middle: grey level 20 x second
    assert abs(np.asarray(Image.open(out / clip["image"])).mean() - 100) < 3  # 5 s
    assert abs(np.asarray(Image.open(out / long["image"])).mean() - 180) < 3  # 9 s
    # 10 s of 16 kHz mono audio around it, and the tone is there
    wave, sr = soundfile.read(out / long["audio"])
    assert sr == 16000 and wave.ndim == 1 and len(wave) == 160000
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * sr / len(wave) - 440) < 2
    assert (out / "mels" / "clip_000000.png").read_bytes()[:4] == b"\x89PNG"
    # the array_record dataset the Multi2Cap VggCaps builder reads
    from kdjax.data import tfds_builders

    ds = tfds_builders.open_split(manifest["tfds"], "train")
    item = tfds_builders.decode_row(ds[0])
    assert len(ds) == 4 and len(tfds_builders.open_split(manifest["tfds"], "test")) == 1
    assert not tfds_builders.has_split(manifest["tfds"], "validation")  # VggCaps has none
    assert item["captions"] == [rows[item["id"]]["caption"]] and item["wave"].shape == (160000,)
    assert item["image"].shape == (48, 64, 3)

    # resumed: nothing is extracted or captioned again; asking again only for the refusal
    calls = sum(server.calls.values())
    p = subprocess.run(cmd, env=runs.env(1), cwd=runs.REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and sum(server.calls.values()) == calls
    assert json.load(open(out / "manifest.json"))["items"] == 5
    p = subprocess.run(cmd + ["--retry_failed"], env=runs.env(1), cwd=runs.REPO, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0 and sum(server.calls.values()) == calls + 1


def test_csv_errors_name_the_line(tmp_path):
    p = tmp_path / "v.csv"
    p.write_text("youtube_id,start,label,split\nabc,1,dog,train\nxyz,soon,cat,test\n")
    with pytest.raises(vb.InputError, match=r"v.csv:3: start seconds 'soon' is not a number"):
        vb.read_csv(str(p))
    p.write_text("youtube_id,start,label,split\nabc,1,dog,train\n\nxyz,12.5,cat\n")
    assert [(r.id, r.label, r.split) for r in vb.read_csv(str(p))] == [("abc_000001", "dog", "train"),
                                                                       ("xyz_000012", "cat", "")]
    with pytest.raises(vb.InputError, match="no such CSV"):
        vb.read_csv(str(tmp_path / "none.csv"))


def test_two_builds_on_one_out_folder(server, tmp_path):
    """While a build holds --out, a second build refuses at once naming it and asks the LLM nothing (19 of 24
    prompts were paid for twice before); a build whose process is gone leaves a lock the next one takes over."""
    from kdjax.train.workdir_lock import WorkdirLock

    vdir, csv = _dataset(tmp_path)
    out = tmp_path / "vggcaps"
    out.mkdir()
    cmd = [sys.executable, "-m", "kdjax.vggcaps", "build", f"--videos={vdir}", f"--csv={csv}", f"--out={out}",
           f"--base_url={server.url}", "--model=fake-4o", "--api_key=sk-test", "--limit=1"]
    with WorkdirLock(str(out), who="build", what="output folder", flag="--out"):  # a build running (this pid)
        p = subprocess.run(cmd, env=runs.env(1), cwd=runs.REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert f"another build is using this output folder (pid {os.getpid()} on" in p.stderr
    assert sum(server.calls.values()) == 0
    (out / ".kdjax.lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname(),
                                                 "started": "yesterday"}))  # a dead build's lock
    p = subprocess.run(cmd, env=runs.env(1), cwd=runs.REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert sum(server.calls.values()) == 2 and not (out / ".kdjax.lock").exists()
