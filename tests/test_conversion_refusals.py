"""Conversion refuses what PyTorch would refuse, naming the file or tensor: configs no model can be built from,
damaged weight files, NaN/Inf weights, and mis-shaped tensors reported in the checkpoint's own layout."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

import kdjax.convert as kc
from kdjax.convert.param_map import Entry, expand, hf_to_flax
from kdjax.errors import InputError
from kdjax.models.invariants import ConfigError
from kdjax.models.llama import LlamaConfig

HF_BERT = dict(vocab_size=31, hidden_size=16, num_hidden_layers=1, num_attention_heads=4, intermediate_size=32,
               max_position_embeddings=16)


def _bert_dir(tmp_path, name="bert", safe=True) -> str:
    """A real transformers BertModel saved by transformers itself (as pytorch_model.bin: its state dict saved by
    torch, which transformers 5 no longer writes)."""
    torch.manual_seed(0)
    d = str(tmp_path / name)
    model = transformers.BertModel(transformers.BertConfig(**HF_BERT))
    model.save_pretrained(d)
    if not safe:
        torch.save(model.state_dict(), os.path.join(d, "pytorch_model.bin"))
        os.remove(os.path.join(d, "model.safetensors"))
    return d


def _edit_tensors(d: str, edit) -> None:
    from safetensors.numpy import load_file, save_file

    file = os.path.join(d, "model.safetensors")
    t = load_file(file)
    edit(t)
    save_file(t, file, metadata={"format": "pt"})


def test_heads_that_do_not_divide_the_width_are_refused_at_load_as_transformers_does(tmp_path):
    d = _bert_dir(tmp_path)
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg["num_attention_heads"] = 3
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    with pytest.raises(ValueError, match="not a multiple of the number of attention heads"):
        transformers.BertModel(transformers.BertConfig(**cfg))
    with pytest.raises(ConfigError) as err:
        kc.from_pretrained(d)
    msg = str(err.value)
    assert os.path.join(d, "config.json") in msg
    assert "hidden_size (16) is not a multiple of num_attention_heads (3)" in msg
    # an override is checked the same way, and named
    with pytest.raises(ConfigError, match="overrides .*hidden_dropout_prob"):
        kc.from_pretrained(_bert_dir(tmp_path, "b2"), hidden_dropout_prob=1.5)


def test_llama_heads_must_group_into_kv_heads():
    base = dict(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                num_key_value_heads=2)
    assert LlamaConfig.from_hf(base).kv_heads == 2
    with pytest.raises(ConfigError, match=r"num_attention_heads \(4\) is not a multiple of num_key_value_heads \(3\)"):
        LlamaConfig.from_hf({**base, "num_key_value_heads": 3})
    with pytest.raises(ConfigError, match="num_hidden_layers"):
        LlamaConfig.from_hf({**base, "num_hidden_layers": -1})


def test_a_training_run_from_a_bad_checkpoint_stops_before_the_first_step_naming_its_config(tmp_path):
    """Today: the run starts and the first step dies in a reshape TypeError. After: one line naming the file."""
    d = _bert_dir(tmp_path)
    cfg = json.load(open(os.path.join(d, "config.json")))
    json.dump({**cfg, "num_attention_heads": 3}, open(os.path.join(d, "config.json"), "w"))

    def run(*args):
        return subprocess.run([sys.executable, "-m", "kdjax.main", "--config=configs/dsg_kd.py:tiny",
                               f"--workdir={tmp_path / 'w'}", *args], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "JAX_PLATFORMS": "cpu"})

    p = run(f"--config.teacher.hf_dir={d}")
    assert p.returncode == 1, p.stderr[-2000:]
    assert (f"kdjax: {d}/config.json: BertConfig: hidden_size (16) is not a multiple of num_attention_heads (3)"
            in p.stderr), p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    assert not os.path.exists(tmp_path / "w" / "checkpoints")
    # the random-init architecture in the config itself is checked when the config is parsed
    p = run("--config.student.init.num_attention_heads=3")
    assert p.returncode == 1 and "student.init.num_attention_heads: 3 heads do not divide hidden_size 16" in p.stderr


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "pytorch_bin"])
def test_truncated_weight_files_are_named(safe, tmp_path):
    d = _bert_dir(tmp_path, safe=safe)
    file = os.path.join(d, "model.safetensors" if safe else "pytorch_model.bin")
    size = os.path.getsize(file)
    with open(file, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(InputError) as err:
        kc.from_pretrained(d)
    assert file in str(err.value) and "damaged or incomplete" in str(err.value)


def test_a_bad_shard_index_is_named(tmp_path):
    d = _bert_dir(tmp_path)
    os.replace(os.path.join(d, "model.safetensors"), os.path.join(d, "model-00001-of-00001.safetensors"))
    index = os.path.join(d, "model.safetensors.index.json")
    open(index, "w").write('{"metadata": {}, "weight_map": ')
    with pytest.raises(InputError, match=f"{index}: not a checkpoint index"):
        kc.from_pretrained(d)


def test_nan_weights_are_named_and_refused_unless_allowed(tmp_path):
    d = _bert_dir(tmp_path)
    name = "encoder.layer.0.attention.self.key.weight"

    def poison(t):
        t[name] = t[name].copy()
        t[name][3, :2] = [np.nan, np.inf]

    _edit_tensors(d, poison)
    with pytest.raises(kc.ConversionError) as err:
        kc.from_pretrained(d)
    assert f"{name}: 2 NaN/Inf of 256" in str(err.value) and "allow_nonfinite=True" in str(err.value)
    model, report = kc.from_pretrained(d, allow_nonfinite=True, return_report=True)
    assert report.nonfinite == [f"{name}: 2 NaN/Inf of 256"] and report.ok()
    kernel = np.asarray(model.encoder.layer[0].attention.self.key.kernel[...])
    assert np.isnan(kernel[0, 3]) and np.isinf(kernel[1, 3])  # (in, out): the HF row is the Flax column
    # the request does not outlive the call
    with pytest.raises(kc.ConversionError):
        kc.from_pretrained(d)


def test_mis_shapes_are_reported_in_the_checkpoints_layout(tmp_path):
    """An HF linear weight (out, in) = (16, 31) where the model wants (16, 16) is reported as (16, 31), not as its
    transposed Flax view (31, 16)."""
    d = _bert_dir(tmp_path)
    name = "encoder.layer.0.attention.self.query.weight"
    _edit_tensors(d, lambda t: t.__setitem__(name, np.zeros((16, 31), np.float32)))
    with pytest.raises(kc.ConversionError) as err:
        kc.from_pretrained(d)
    assert f"{name}: {d} (16, 31) vs model (16, 16)" in str(err.value)


def test_fused_and_stacked_mis_shapes_are_reported_once_in_the_checkpoints_layout():
    rules = expand([Entry("attn", "attn.{part}", "mha_in", parts=("q", "k", "v")),
                    Entry("layers.{i}.fc", "layers.fc", "linear")], num_layers=2)
    shapes = {**{f"attn.{p}.kernel": (4, 4) for p in "qkv"}, **{f"attn.{p}.bias": (4,) for p in "qkv"},
              "layers.fc.kernel": (2, 4, 6), "layers.fc.bias": (2, 6)}
    tensors = {"attn.in_proj_weight": np.zeros((12, 5), np.float32), "attn.in_proj_bias": np.zeros(10, np.float32),
               "layers.0.fc.weight": np.zeros((6, 4), np.float32), "layers.0.fc.bias": np.zeros(6, np.float32),
               "layers.1.fc.weight": np.zeros((4, 6), np.float32), "layers.1.fc.bias": np.zeros(6, np.float32)}
    with pytest.raises(kc.ConversionError) as err:
        hf_to_flax(tensors, rules, shapes, source="ckpt")
    msg = str(err.value)
    assert "3 mismatched" in msg, msg
    assert "attn.in_proj_weight: ckpt (12, 5) vs model (12, 4)" in msg
    assert "attn.in_proj_bias: ckpt (10,) vs model (12,) (does not split in 3)" in msg
    assert "layers.1.fc.weight: ckpt (4, 6) vs model (6, 4)" in msg
