"""The conversion registry: every family loads and saves through `from_pretrained` / `save_pretrained`, looked
up by model_type or class; the families added to it (Q-Former, EfficientNet, the EffAAC student) round-trip
through their PyTorch references."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from kdjax import convert
from kdjax.convert import registry


def test_every_family_is_registered_once():
    from kdjax.models.bert import BertModel, SequenceClassifier
    from kdjax.models.ced import CED
    from kdjax.models.effaac import EffAAC
    from kdjax.models.efficientnet import EfficientNet
    from kdjax.models.llama import LlamaForCausalLM
    from kdjax.models.qformer import QFormer
    from kdjax.models.resnet import ResNet
    from kdjax.models.vit import ViT

    names = [f.name for f in registry.families()]
    assert sorted(names) == ["bert", "ced", "effaac", "efficientnet", "llama", "qformer", "resnet", "vit"]
    for cls in (BertModel, SequenceClassifier, CED, EffAAC, EfficientNet, LlamaForCausalLM, QFormer, ResNet, ViT):
        assert any(issubclass(cls, f.classes) for f in registry.families()), cls
    with pytest.raises(ValueError, match="both load"):
        registry.register(registry.Family("bert_again", ("bert",), (), lambda *a, **k: None, lambda *a, **k: None))


def test_unknown_model_type_and_class(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match=r"model_type 'gpt2' is not supported \(known: .*blip_2_qformer.*llama"):
        convert.from_pretrained(str(tmp_path))
    with pytest.raises(TypeError, match="save_pretrained does not know Linear"):
        convert.save_pretrained(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), str(tmp_path / "x"))


def test_qformer_saves_a_blip2_qformer_directory(tmp_path):
    """save_pretrained of a Q-Former (a TypeError before): transformers' Blip2QFormerModel loads the directory,
    with the query tokens beside it, and gives kdjax's outputs; from_pretrained reads it back."""
    hc = transformers.Blip2QFormerConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=96, cross_attention_frequency=1, encoder_hidden_size=48)
    torch.manual_seed(0)
    hf = transformers.Blip2QFormerModel(hc).eval()
    tensors = {f"qformer.{k}": v.numpy() for k, v in hf.state_dict().items()}
    tensors["query_tokens"] = (torch.randn(1, 3, 64) * 0.5).numpy()
    model, _ = convert.load_qformer(tensors, hc.to_dict(), window=0)
    out = str(tmp_path / "qformer")
    convert.save_pretrained(model, out)
    loaded = transformers.Blip2QFormerModel.from_pretrained(out).eval()
    from safetensors.numpy import load_file

    q = torch.from_numpy(load_file(f"{out}/model.safetensors")["query_tokens"])
    enc = torch.randn(2, 10, 48)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 6:] = 0
    with torch.no_grad():
        ref = loaded(query_embeds=q.expand(2, -1, -1), encoder_hidden_states=enc,
                     encoder_attention_mask=mask).last_hidden_state.numpy()
    got = np.asarray(model(jnp.asarray(enc.numpy()), jnp.asarray(mask.numpy()))["last_hidden_state"])
    assert np.abs(got - ref).max() < 1e-4
    back = convert.from_pretrained(out)
    assert back.cfg.window == 0 and back.cfg.num_query_tokens == 3
    np.testing.assert_array_equal(np.asarray(back(jnp.asarray(enc.numpy()), jnp.asarray(mask.numpy()))
                                             ["last_hidden_state"]), got)


def test_efficientnet_directory_round_trips_through_efficientnet_pytorch(tmp_path):
    import efficientnet_pytorch

    from kdjax.models.efficientnet import EfficientNet, EfficientNetConfig

    cfg = EfficientNetConfig.from_name("efficientnet-b0", width_coefficient=0.25, depth_coefficient=0.34)
    model = EfficientNet(cfg, rngs=nnx.Rngs(0))
    out = str(tmp_path / "eff")
    convert.save_pretrained(model, out)
    from safetensors.torch import load_file

    ref = efficientnet_pytorch.EfficientNet.from_name("efficientnet-b0", in_channels=1, width_coefficient=0.25,
                                                      depth_coefficient=0.34).eval()
    missing, unexpected = ref.load_state_dict(load_file(f"{out}/model.safetensors"), strict=False)
    assert not unexpected and all(k.startswith("_fc.") for k in missing), (missing, unexpected)
    x = np.random.default_rng(0).standard_normal((2, 1, 64, 48)).astype(np.float32)
    with torch.no_grad():
        want = ref.extract_features(torch.from_numpy(x)).permute(0, 2, 3, 1).numpy()
    run = lambda m: np.asarray(nnx.jit(lambda m, v: m(v, deterministic=True)["last_hidden_state"])(
        m, jnp.asarray(x.transpose(0, 2, 3, 1))))
    got = run(model)
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    np.testing.assert_array_equal(run(convert.from_pretrained(out)), got)


def test_effaac_student_directory_loads_into_the_pytorch_student(tmp_path):
    from kdjax.convert.pytorch.modeling_effaac import EffNetTrm

    from kdjax.models.caption_decoder import CaptionDecoderConfig
    from kdjax.models.effaac import EffAAC, EffAACConfig
    from kdjax.models.efficientnet import EfficientNetConfig

    cfg = EffAACConfig(encoder=EfficientNetConfig.from_name("efficientnet-b2"),
                       decoder=CaptionDecoderConfig(vocab_size=300, memory_dim=1408))
    model = EffAAC(cfg, rngs=nnx.Rngs(0))
    out = str(tmp_path / "student")
    convert.save_pretrained(model, out)
    from safetensors.torch import load_file

    tm = EffNetTrm(300)
    missing, unexpected = tm.load_state_dict(load_file(f"{out}/model.safetensors"), strict=False)
    assert not unexpected and all(k.startswith("encoder._fc.") for k in missing), (missing, unexpected)
    back = convert.from_pretrained(out)
    a = jax.tree.leaves(nnx.state(model, nnx.Param))
    b = jax.tree.leaves(nnx.state(back, nnx.Param))
    assert len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
