"""BERT/RoBERTa parity with transformers and HF <-> Flax conversion both ways."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

import kdjax.convert as kc
from kdjax.convert.checkpoint_io import write_safetensors
from kdjax.models.bert import BertConfig, BertModel, SequenceClassifier
from kdjax.models.state import flatten

TOL = 1e-4


def _run_flax(model, enc):
    return model(jnp.asarray(enc["input_ids"]), jnp.asarray(enc["attention_mask"]),
                 jnp.asarray(enc["token_type_ids"]) if "token_type_ids" in enc else None,
                 output_hidden_states=True, output_attentions=True)


def _run_torch(model, enc):
    with torch.no_grad():
        return model(**{k: torch.tensor(np.asarray(v)) for k, v in enc.items()},
                     output_hidden_states=True, output_attentions=True)


def _max_diffs(ours, theirs, mask=None):
    """Largest differences of hidden states and attention maps over real tokens (`mask`: the attention mask).
    Rows of padding positions hold values of no meaning, which differ with how each side masks (a large
    negative number or -inf) by more than the float32 noise of real rows."""
    real = (lambda x: x) if mask is None else (lambda x: x[np.asarray(mask).astype(bool)])
    h = max(float(np.abs(real(np.asarray(a)) - real(b.numpy())).max())
            for a, b in zip(ours["hidden_states"], theirs.hidden_states))
    # attentions are (batch, heads, query, key): the query rows of real tokens
    a = max(float(np.abs(real(np.swapaxes(np.asarray(x), 1, 2)) - real(np.swapaxes(y.numpy(), 1, 2))).max())
            for x, y in zip(ours["attentions"], theirs.attentions))
    assert len(ours["hidden_states"]) == len(theirs.hidden_states)
    assert len(ours["attentions"]) == len(theirs.attentions)
    return h, a


def test_minilm_real_weights_parity(minilm_dir):
    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    texts = ["fever and seizure since yesterday, SpO2 91 %", "보호자 진술상 vomiting 있었으며 today",
             "short"]
    enc = dict(tok(texts, padding=True, return_tensors="np"))
    ours = _run_flax(kc.from_pretrained(minilm_dir), enc)
    ref = transformers.AutoModel.from_pretrained(minilm_dir, attn_implementation="eager").eval()
    theirs = _run_torch(ref, enc)
    h, a = _max_diffs(ours, theirs, enc["attention_mask"])
    assert h <= TOL and a <= TOL, (h, a)
    assert np.abs(np.asarray(ours["pooler_output"]) - theirs.pooler_output.numpy()).max() <= TOL
    real = enc["attention_mask"].astype(bool)
    assert np.abs(np.asarray(ours["last_hidden_state"])[real] - theirs.last_hidden_state.numpy()[real]).max() <= TOL


def test_keep_layers_is_hf_loading_fewer_layers_of_real_weights(minilm_dir, tmp_path):
    """A smaller student from a pretrained BERT (DSG-KD's student.num_layers): MiniLM's first 2 layers equal
    transformers' MiniLM loaded with num_hidden_layers=2."""
    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    enc = dict(tok(["fever and seizure since yesterday", "short"], padding=True, return_tensors="np"))
    ours = kc.from_pretrained(minilm_dir)
    ours.keep_layers(2)
    assert ours.cfg.num_hidden_layers == 2
    ref = transformers.AutoModel.from_pretrained(minilm_dir, num_hidden_layers=2, attn_implementation="eager").eval()
    h, a = _max_diffs(_run_flax(ours, enc), _run_torch(ref, enc), enc["attention_mask"])
    assert h <= TOL and a <= TOL, (h, a)
    with pytest.raises(ValueError, match="has 2 layers"):
        ours.keep_layers(3)


def _tiny_roberta(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.RobertaConfig(vocab_size=120, hidden_size=32, num_hidden_layers=3,
                                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=40,
                                     layer_norm_eps=1e-5, type_vocab_size=1)
    model = transformers.RobertaModel(cfg, add_pooling_layer=True).eval()
    for p in model.parameters():  # LayerNorms start at (1, 0); perturb so the test sees them
        p.data.add_(0.05 * torch.randn_like(p))
    path = str(tmp_path / "roberta")
    model.save_pretrained(path)
    # Reload with eager attention: the SDPA kernels return no attention maps.
    return transformers.AutoModel.from_pretrained(path, attn_implementation="eager").eval(), path


def _ids(vocab, pad, shape=(3, 17), seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, vocab, shape).astype(np.int64)
    mask = np.ones(shape, np.int64)
    mask[1, shape[1] * 2 // 3:] = 0
    mask[-1, shape[1] // 3:] = 0
    ids[mask == 0] = pad
    return {"input_ids": ids, "attention_mask": mask}


def test_random_roberta_parity_and_roundtrip(tmp_path):
    ref, path = _tiny_roberta(tmp_path)
    ours = kc.from_pretrained(path)
    assert ours.cfg.roberta_positions
    enc = _ids(120, ref.config.pad_token_id)
    out = _run_flax(ours, enc)
    h, a = _max_diffs(out, _run_torch(ref, enc))
    assert h <= TOL and a <= TOL, (h, a)

    # Flax -> HF -> Flax is bit-exact, and transformers loads what we write with identical outputs.
    out_dir = str(tmp_path / "saved")
    kc.save_pretrained(ours, out_dir)
    back = kc.from_pretrained(out_dir)
    a0, a1 = flatten(nnx.state(ours)), flatten(nnx.state(back))
    assert a0.keys() == a1.keys()
    for k in a0:
        np.testing.assert_array_equal(np.asarray(a0[k]), np.asarray(a1[k]), err_msg=k)
    reloaded = transformers.AutoModel.from_pretrained(out_dir, attn_implementation="eager").eval()
    assert type(reloaded).__name__ == "RobertaModel"
    h, a = _max_diffs(out, _run_torch(reloaded, enc))
    assert h <= TOL and a <= TOL, (h, a)
    for (k, v), (k2, v2) in zip(sorted(ref.state_dict().items()), sorted(reloaded.state_dict().items())):
        assert k == k2
        torch.testing.assert_close(v, v2, rtol=0, atol=0)


def test_flax_to_hf_to_flax_bitexact_bert_classifier(tmp_path):
    cfg = BertConfig(vocab_size=90, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                     intermediate_size=48, max_position_embeddings=32, num_labels=3, classifier_head="bert")
    model = SequenceClassifier(cfg, rngs=nnx.Rngs(3))
    out_dir = str(tmp_path / "clf")
    kc.save_pretrained(model, out_dir)
    back = kc.from_pretrained(out_dir, task="sequence_classification")
    a0, a1 = flatten(nnx.state(model)), flatten(nnx.state(back))
    assert a0.keys() == a1.keys()
    for k in a0:
        np.testing.assert_array_equal(np.asarray(a0[k]), np.asarray(a1[k]), err_msg=k)
    # transformers reads the classifier with the same logits.
    enc = _ids(90, 0, (2, 9))
    enc["token_type_ids"] = np.zeros_like(enc["input_ids"])
    ref = transformers.AutoModelForSequenceClassification.from_pretrained(out_dir).eval()
    with torch.no_grad():
        logits = ref(**{k: torch.tensor(v) for k, v in enc.items()}).logits.numpy()
    ours = model(jnp.asarray(enc["input_ids"]), jnp.asarray(enc["attention_mask"]))["logits"]
    assert np.abs(np.asarray(ours) - logits).max() <= TOL


@pytest.mark.parametrize("model_type,head,pooler", [("bert", "dsg_kd", True), ("bert", "dsg_kd", False),
                                                     ("roberta", "dsg_kd", True), ("bert", "first_token", False)])
def test_kdjax_heads_load_in_transformers_with_equal_logits(tmp_path, model_type, head, pooler):
    """The heads transformers has no class for travel as kdjax's PyTorch classes inside the directory:
    AutoModelForSequenceClassification (trust_remote_code) gives kdjax's logits, AutoModel the encoder, and kdjax
    reads the directory back bit for bit without being told the head."""
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_labels=3,
                     intermediate_size=32, max_position_embeddings=20, classifier_head=head, model_type=model_type,
                     add_pooling_layer=pooler, pad_token_id=1 if model_type == "roberta" else 0)
    model = SequenceClassifier(cfg, rngs=nnx.Rngs(0))
    out_dir = str(tmp_path / "dsg")
    kc.save_pretrained(model, out_dir)
    assert not os.path.exists(os.path.join(out_dir, "kdjax_head.safetensors"))
    back = kc.from_pretrained(out_dir, task="sequence_classification")
    assert back.cfg.classifier_head == head and back.cfg.add_pooling_layer == pooler
    for k, v in flatten(nnx.state(model)).items():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(flatten(nnx.state(back))[k]), err_msg=k)
    enc = _ids(50, cfg.pad_token_id, (2, 7))  # RoBERTa's positions skip its padding id
    ref = transformers.AutoModelForSequenceClassification.from_pretrained(out_dir, trust_remote_code=True).eval()
    assert type(ref).__name__ == f"Kdjax{'Roberta' if model_type == 'roberta' else 'Bert'}ForSequenceClassification"
    with torch.no_grad():
        logits = ref(**{k: torch.tensor(v) for k, v in enc.items()}).logits.numpy()
    ours = model(jnp.asarray(enc["input_ids"]), jnp.asarray(enc["attention_mask"]))["logits"]
    assert np.abs(np.asarray(ours) - logits).max() <= TOL
    encoder = transformers.AutoModel.from_pretrained(out_dir, attn_implementation="eager").eval()
    h, a = _max_diffs(_run_flax(model.encoder, {**enc, "token_type_ids": np.zeros_like(enc["input_ids"])}),
                      _run_torch(encoder, enc))
    assert h <= TOL and a <= TOL


def test_sharded_and_bin_checkpoints(tmp_path, minilm_dir):
    ref = transformers.AutoModel.from_pretrained(minilm_dir)
    expected = flatten(nnx.state(kc.from_pretrained(minilm_dir)))
    # Sharded safetensors with an index.
    sharded = tmp_path / "sharded"
    tensors = {k: v.numpy() for k, v in ref.state_dict().items()}
    write_safetensors(tensors, str(sharded), max_shard_bytes=20 * 2**20)
    assert os.path.isfile(sharded / "model.safetensors.index.json")
    (sharded / "config.json").write_text(json.dumps(ref.config.to_dict()))
    # pytorch_model.bin
    binned = tmp_path / "bin"
    binned.mkdir()
    torch.save(ref.state_dict(), binned / "pytorch_model.bin")
    (binned / "config.json").write_text(json.dumps(ref.config.to_dict()))
    for path in (sharded, binned):
        got = flatten(nnx.state(kc.from_pretrained(str(path))))
        for k, v in expected.items():
            np.testing.assert_array_equal(np.asarray(v), np.asarray(got[k]), err_msg=f"{path}: {k}")


def test_partial_or_mismatched_load_is_refused(tmp_path):
    cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=16)
    good = str(tmp_path / "good")
    kc.save_pretrained(BertModel(cfg, rngs=nnx.Rngs(0)), good)
    from safetensors.numpy import load_file, save_file

    tensors = load_file(os.path.join(good, "model.safetensors"))
    cases = {
        "missing": lambda t: t.pop("encoder.layer.1.output.dense.weight"),
        "unexpected": lambda t: t.__setitem__("encoder.layer.7.extra.weight", np.zeros(3, np.float32)),
        "mismatched": lambda t: t.__setitem__("encoder.layer.0.attention.self.query.weight",
                                               np.zeros((16, 8), np.float32)),
    }
    for kind, edit in cases.items():
        d = tmp_path / kind
        d.mkdir()
        t = dict(tensors)
        edit(t)
        save_file(t, str(d / "model.safetensors"))
        (d / "config.json").write_text(open(os.path.join(good, "config.json")).read())
        with pytest.raises(kc.ConversionError) as err:
            kc.from_pretrained(str(d))
        msg = str(err.value)
        assert kind in msg
        name = {"missing": "encoder.layer.1.output.dense.weight", "unexpected": "encoder.layer.7.extra.weight",
                "mismatched": "encoder.layer.0.attention.self.query.weight"}[kind]
        assert name in msg


def test_encoder_checkpoint_into_classifier_reports_fresh_head(minilm_dir):
    model, report = kc.from_pretrained(minilm_dir, task="sequence_classification", num_labels=2,
                                       classifier_head="dsg_kd", return_report=True)
    assert report.ok()
    assert sorted(report.initialized) == ["classifier.dense.bias", "classifier.dense.kernel",
                                          "classifier.out_proj.bias", "classifier.out_proj.kernel"]
    assert "embeddings.position_ids" in report.ignored
    assert model(jnp.ones((1, 5), jnp.int32))["logits"].shape == (1, 2)


def test_dropout_active_only_in_training():
    cfg = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.5)
    model = BertModel(cfg, rngs=nnx.Rngs(0))
    ids = jnp.ones((2, 6), jnp.int32)
    a = model(ids)["last_hidden_state"]
    b = model(ids)["last_hidden_state"]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c = model(ids, deterministic=False, rngs=nnx.Rngs(dropout=jax.random.key(1)))["last_hidden_state"]
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-3


def test_bfloat16_safetensors_and_no_torch_needed(tmp_path, minilm_dir):
    """Safetensors checkpoints load without PyTorch installed (the main install has none), and
    bfloat16 tensors are read without torch too."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "import kdjax.convert as kc\n"
            f"m = kc.from_pretrained({minilm_dir!r})\n"
            "print(m.cfg.num_hidden_layers)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip().endswith("6")

    import ml_dtypes
    from safetensors.numpy import load_file, save_file

    tensors = load_file(os.path.join(minilm_dir, "model.safetensors"))
    bf = tmp_path / "bf16"
    bf.mkdir()
    save_file({k: v.astype(ml_dtypes.bfloat16) if v.dtype == np.float32 else v for k, v in tensors.items()},
              str(bf / "model.safetensors"))
    (bf / "config.json").write_text(open(os.path.join(minilm_dir, "config.json")).read())
    got = flatten(nnx.state(kc.from_pretrained(str(bf))))
    ref = flatten(nnx.state(kc.from_pretrained(minilm_dir)))
    for k, v in ref.items():
        assert got[k].dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(v), rtol=1e-2, atol=1e-2, err_msg=k)
