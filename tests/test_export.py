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


def test_dsg_kd_export_loads_in_transformers_with_kdjax_logits(tmp_path):
    work, out = str(tmp_path / "run with spaces"), str(tmp_path / "export")
    # trained on 8 devices, exported (and compared) on one
    runs.run("configs/dsg_kd.py:tiny", work, "--config.train.steps=3", devices=8)
    before = runs.snapshot(work)
    p = export(work, out)
    assert p.returncode == 0, p.stderr[-3000:]
    assert runs.snapshot(work) == before  # the workdir is only read
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
    merge = export(work, str(tmp_path / "e4"), "--merge_lora")
    assert merge.returncode != 0 and "no LoRA" in merge.stderr and not os.path.exists(tmp_path / "e4")


def _kdjax_captions(model, waves, masks, gen: dict) -> list[list[int]]:
    from flax import nnx

    from kdjax.models.generate import GenerateConfig

    g = GenerateConfig(**{k: gen[k] for k in ("max_new_tokens", "min_new_tokens", "num_beams", "length_penalty",
                                              "early_stopping", "eos_token_id")})
    gdef, state = nnx.split(model)
    tokens, lengths = nnx.merge(gdef, state).caption(jnp.asarray(waves), jnp.asarray(masks), g)
    return [[int(t) for t in row[:n]] for row, n in zip(np.asarray(tokens), np.asarray(lengths))]


def _clips(seconds: float, n: int = 4, padded: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Embedded real clips at 16 kHz, cropped or padded to `seconds` as captioning does (`padded`: one is)."""
    import glob

    from kdjax.audio.io import crop_or_pad, load_audio

    files = sorted(glob.glob(os.path.join(runs.REPO, "kdjax", "data", "assets", "real_sounds", "audio", "*.flac")))
    pairs = [crop_or_pad(load_audio(f, 16000), int(seconds * 16000)) for f in files[:n]]
    assert len(pairs) == n and (not padded or not all(m.all() for _, m in pairs))  # padding is masked on both sides
    return np.stack([w for w, _ in pairs]), np.stack([m for _, m in pairs])


def test_effaac_export_captions_in_pytorch_token_for_token(tmp_path):
    from kdjax.convert.pytorch.modeling_effaac import EffNetTrm, decode
    from kdjax.data import tokenizers
    from kdjax.systems.effaac.student import load_trained
    from kdjax.train.restore import workdir_config

    work, out = str(tmp_path / "w"), str(tmp_path / "export")
    runs.run("configs/effaac.py:tiny", work, "--config.kd.enc=none", "--config.kd.seq_weight=0",
             "--config.teacher.kind=none", "--config.eval.final=False",
             "--config.eval.generate.num_beams=3", "--config.eval.generate.max_new_tokens=8")
    p = export(work, out)
    assert p.returncode == 0, p.stderr[-3000:]
    assert {"modeling_effaac.py", "README.md", "tokenizer.json", "model.safetensors"} <= set(os.listdir(out))
    model_pt, tok_pt, gen = EffNetTrm.from_export(out)  # strict
    assert gen["num_beams"] == 3 and gen["max_new_tokens"] == 8
    ours, tok = load_trained(workdir_config(work), work)
    waves, masks = _clips(gen["clip_seconds"])
    for g in (gen, {**gen, "num_beams": 1}):
        mine = _kdjax_captions(ours, waves, masks, g)
        theirs = model_pt.caption(torch.from_numpy(waves), torch.from_numpy(masks), **g)
        assert theirs == mine, (g["num_beams"], theirs, mine)
    texts = tokenizers.text_decoder(tok)(np.array([t + [0] * (8 - len(t)) for t in mine]))
    assert [decode(tok_pt, t, gen["eos_token_id"]) for t in theirs] == texts


def test_pytorch_decoding_is_kdjaxs_on_a_random_student():
    """Greedy and beam search (length penalty, early stopping, a minimum length) on an untrained student with a
    300-word vocabulary, from the same encoder output (random, so that captions vary; the encoders' parity is
    tests/test_effaac_model.py's), masked in one row; and the front end on real clips."""
    from flax import nnx

    from kdjax.convert import effaac as effaac_map
    from kdjax.convert.common import load_family
    from kdjax.convert.pytorch.modeling_effaac import EffNetTrm
    from kdjax.models.caption_decoder import CaptionDecoderConfig
    from kdjax.models.effaac import EffAAC, EffAACConfig, FrontEndConfig
    from kdjax.models.efficientnet import EfficientNetConfig

    torch.manual_seed(0)
    tm = EffNetTrm(300, encoder="efficientnet-b0", encoder_overrides={"width_coefficient": 0.25,
                                                                     "depth_coefficient": 0.34},
                   d=32, heads=4, ffn=64, layers=2).eval()
    with torch.no_grad():  # N(0, 1) embeddings (torch's init) would make every step repeat BOS whatever the memory
        tm.decoder.word_embedding.weight.mul_(0.05)
        tm.decoder.memory_proj.weight.mul_(10.0)
    cfg = EffAACConfig(encoder=EfficientNetConfig.from_name("efficientnet-b0", width_coefficient=0.25,
                                                            depth_coefficient=0.34),
                       decoder=CaptionDecoderConfig(vocab_size=300, d_model=32, num_heads=4, ffn_dim=64))
    model, report = load_family({k: v.detach().numpy() for k, v in tm.state_dict().items()},
                                lambda: EffAAC(cfg, rngs=nnx.Rngs(0)), effaac_map.rules(cfg), effaac_map.IGNORE, "torch")
    assert report.ok()
    waves, _ = _clips(2.0)
    mel_ours = np.asarray(FrontEndConfig().mel(jnp.asarray(waves)))
    mel_theirs = tm.front_end(torch.from_numpy(waves)).numpy()
    assert np.abs(mel_ours - mel_theirs).max() < 1e-2  # dB, over a 120 dB range

    rng = np.random.default_rng(0)
    memory = rng.standard_normal((5, 6, cfg.encoder.out_channels)).astype(np.float32) * 3
    mask = np.ones((5, 6), bool)
    mask[2, 4:] = False
    for beams, lp, early in ((1, 1.0, False), (3, 1.0, False), (4, 0.6, False), (3, 1.0, True)):
        g = {"bos_token_id": 1, "eos_token_id": 2, "max_new_tokens": 9, "min_new_tokens": 2, "num_beams": beams,
             "length_penalty": lp, "early_stopping": early}
        from kdjax.models.generate import GenerateConfig

        gc = GenerateConfig(**{k: v for k, v in g.items() if k != "bos_token_id"})
        tokens, lengths = model.caption(None, None, gc, memory=(jnp.asarray(memory), jnp.asarray(mask)))
        mine = [[int(t) for t in row[:n]] for row, n in zip(np.asarray(tokens), np.asarray(lengths))]
        assert len({tuple(t) for t in mine}) > 2
        assert tm.generate(torch.from_numpy(memory), torch.from_numpy(mask), **g) == mine, g


def test_audio_tagging_export_loads_strictly_in_the_ced_code(tmp_path):
    import json

    from kdjax.systems.audio_tagging import build_model
    from kdjax.train.restore import restore_trained, workdir_config
    from tests.test_audio_tagging import CONFIG, QUICK
    from tests.torch_ced import TorchCED

    work, out = str(tmp_path / "w"), str(tmp_path / "export")
    runs.run(CONFIG, work, *QUICK, "--config.train.steps=3", "--config.eval.final=False")
    p = export(work, out)
    assert p.returncode == 0, p.stderr[-3000:]
    cfg = workdir_config(work)
    labels = json.load(open(os.path.join(out, "labels.json")))
    assert labels == list(cfg.data.labels)
    from safetensors.torch import load_file

    ref = TorchCED("ced_tiny", num_classes=len(labels), depth=2).eval()
    ref.load_state_dict(load_file(os.path.join(out, "model.safetensors")), strict=True)
    ours = restore_trained(cfg, build_model(cfg, len(labels)), None, work)
    waves, _ = _clips(float(cfg.data.clip_seconds), padded=False)
    with torch.no_grad():
        theirs = ref(torch.from_numpy(waves))["logits"].numpy()
    mine = np.asarray(ours(jnp.asarray(waves), None)["logits"])
    np.testing.assert_allclose(theirs, mine, atol=2e-4 * np.abs(mine).max())
    assert mine.std(0).mean() > 1e-3  # the clips' logits differ: a real comparison


@runs.SHARES_M2C_TINY
def test_multi2cap_export_reassembled_in_pytorch_captions_token_for_token(m2c_tiny_run, tmp_path):
    """CED (the PyTorch CED of tests/), Q-Former (transformers), projector, LLaMA + LoRA (transformers + peft),
    reassembled from the export by its own code, give kdjax's greedy and beam-search captions of real clips."""
    import json

    from kdjax.convert.pytorch.modeling_multi2cap import Multi2CapTorch
    from kdjax.systems.multi2cap import load_trained
    from kdjax.train.restore import workdir_config
    from tests.torch_ced import TorchCED

    out = str(tmp_path / "export")
    p = export(m2c_tiny_run, out, "--merge_lora")
    assert p.returncode == 0, p.stderr[-3000:]
    assert {"ced", "qformer", "llama_lora", "llama_base", "llama_merged", "tokenizer", "projector.safetensors",
            "multi2cap.json", "modeling_multi2cap.py", "README.md"} <= set(os.listdir(out))
    settings = json.load(open(os.path.join(out, "multi2cap.json")))
    c = settings["ced"]
    ced = TorchCED("ced_tiny", num_classes=0, depth=c["depth"], chunk_mode=c["chunk_mode"]).eval()
    model, tok = Multi2CapTorch.from_export(out, ced)
    cfg = workdir_config(m2c_tiny_run)
    ours, _ = load_trained(cfg, m2c_tiny_run)
    waves, masks = _clips(settings["clip_seconds"])
    for over in ({}, {"num_beams": 3, "max_new_tokens": 6}):
        gen = {**settings["generate"], **over}
        mine = _kdjax_captions(ours, waves, masks, gen)
        theirs = model.caption(torch.from_numpy(waves), torch.from_numpy(masks), **over)
        theirs = [[int(t) for t in row if t != gen["pad_token_id"]] for row in theirs.tolist()]
        assert all(mine) and theirs == mine, (over, theirs, mine)

    # --merge_lora: the merged LLaMA alone is the base with its adapters (and not the base)
    import peft
    import transformers

    ids = torch.randint(3, 100, (2, 9))
    base = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(out, "llama_base")).eval()
    with torch.no_grad():
        plain = base(ids).logits
        adapted = peft.PeftModel.from_pretrained(base, os.path.join(out, "llama_lora")).eval()(ids).logits
        merged = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(out, "llama_merged")).eval()(ids).logits
    np.testing.assert_allclose(merged.numpy(), adapted.numpy(), atol=1e-5)
    assert np.abs(merged.numpy() - plain.numpy()).max() > 1e-4


def test_multi2cap_export_names_a_base_transformers_loads():
    """A run whose LLaMA base is a kdjax asset (the README's smoke run: SmolLM2's GGUF in a pip package) exports
    the Hugging Face directory kdjax converted it to, which transformers reads (a `pkg:` spec it could not)."""
    from configs.multi2cap import SMOLLM2, get_config
    from kdjax.systems.multi2cap.export import base_checkpoint

    cfg = get_config("tiny")
    assert base_checkpoint(cfg) == ""  # a random base: written into the export itself
    cfg.decoder.checkpoint = SMOLLM2
    base = base_checkpoint(cfg)
    assert os.path.isabs(base) and transformers.AutoConfig.from_pretrained(base).model_type == "llama"
