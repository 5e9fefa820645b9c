"""`python -m kdjax.main --mode=export`: a trained workdir's model loaded in PyTorch gives kdjax's outputs."""

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import torch
import transformers

from kdjax.data import synthetic_notes
from kdjax.systems.dsg_kd.models import trained_classifier
from tests import runs


def export(workdir: str, out: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdjax.main", "--mode=export", f"--workdir={workdir}",
                           f"--out={out}", *extra], env=runs.env(), cwd=runs.REPO, capture_output=True, text=True,
                          timeout=600)


def snapshot(root: str) -> dict[str, tuple[int, int]]:
    return {os.path.join(d, n): (os.stat(os.path.join(d, n)).st_size, os.stat(os.path.join(d, n)).st_mtime_ns)
            for d, _, names in os.walk(root) for n in names}


def test_dsg_kd_export_loads_in_transformers_with_kdjax_logits(tmp_path):
    work, out = str(tmp_path / "run with spaces"), str(tmp_path / "export")
    runs.run("configs/dsg_kd.py:tiny", work, "--config.train.steps=3")
    before = snapshot(work)
    p = export(work, out)
    assert p.returncode == 0, p.stderr[-3000:]
    assert snapshot(work) == before  # the workdir is only read
    assert {"config.json", "model.safetensors", "modeling_kdjax_bert.py", "README.md", "tokenizer.json"} <= set(
        os.listdir(out))

    notes = [n.text for n in synthetic_notes.generate_notes(4, seed=5)]
    ours, tok = trained_classifier(work)
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    enc = hf_tok(notes, padding=True, truncation=True, max_length=64, return_tensors="np")
    assert enc["input_ids"].tolist() == tok(notes, padding=True, truncation=True, max_length=64,
                                            return_tensors="np")["input_ids"].tolist()
    model = transformers.AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True).eval()
    with torch.no_grad():
        theirs = model(**{k: torch.tensor(v) for k, v in enc.items()}, output_hidden_states=True)
    mine = ours(jnp.asarray(enc["input_ids"]), jnp.asarray(enc["attention_mask"]),
                jnp.asarray(enc.get("token_type_ids", np.zeros_like(enc["input_ids"]))), output_hidden_states=True)
    # a 3-step tiny classifier's logits barely differ between notes, its hidden states do: both are compared
    np.testing.assert_allclose(theirs.logits.numpy(), np.asarray(mine["logits"]), atol=1e-5)
    real = enc["attention_mask"].astype(bool)
    for a, b in zip(theirs.hidden_states, mine["hidden_states"]):
        np.testing.assert_allclose(a.numpy()[real], np.asarray(b)[real], atol=1e-4)
    assert np.asarray(mine["last_hidden_state"])[real].std(0).mean() > 1e-2  # what was compared varies

    # refusals, each before anything is written
    again = export(work, out)
    assert again.returncode != 0 and "not empty" in again.stderr
    none = export(str(tmp_path / "nowhere"), str(tmp_path / "e2"))
    assert none.returncode != 0 and "config.json" in none.stderr and not os.path.exists(tmp_path / "e2")
    with_cfg = export(work, str(tmp_path / "e3"), "--config=configs/dsg_kd.py:tiny")
    assert with_cfg.returncode != 0 and "drop --config" in with_cfg.stderr
