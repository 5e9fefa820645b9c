"""Q-Former: parity with transformers' Blip2QFormerModel (plain and LOAE-windowed use), conversion both ways."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from kdjax import convert
from kdjax.convert.param_map import ConversionError


def _hf(layers=3, freq=2, seed=0):
    hc = transformers.Blip2QFormerConfig(hidden_size=64, num_hidden_layers=layers, num_attention_heads=4,
                                         intermediate_size=96, cross_attention_frequency=freq, encoder_hidden_size=48)
    torch.manual_seed(seed)
    hf = transformers.Blip2QFormerModel(hc).eval()
    return hc, hf


def _tensors(hf, queries):
    t = {f"qformer.{k}": v.numpy() for k, v in hf.state_dict().items()}
    t["query_tokens"] = queries.numpy()
    return t


def test_plain_qformer_matches_transformers():
    hc, hf = _hf()
    q = torch.randn(1, 3, 64) * 0.5
    model, report = convert.load_qformer(_tensors(hf, q), hc.to_dict(), window=0)
    assert model.cfg.num_query_tokens == 3 and not report.ignored
    assert model.encoder.layer[1].crossattention is None  # cross-attention every 2nd layer
    enc = torch.randn(2, 10, 48)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 7:] = 0
    with torch.no_grad():
        ref = hf(query_embeds=q.expand(2, -1, -1), encoder_hidden_states=enc, encoder_attention_mask=mask,
                 output_hidden_states=True)
    out = model(jnp.asarray(enc.numpy()), jnp.asarray(mask.numpy()), output_hidden_states=True)
    assert np.abs(np.asarray(out["last_hidden_state"]) - ref.last_hidden_state.numpy()).max() < 1e-4
    for a, b in zip(out["hidden_states"][1:], ref.hidden_states[-3:]):
        assert np.abs(np.asarray(a) - b.numpy()).max() < 1e-4


def test_windowed_qformer_is_transformers_per_window():
    """LOAE: 252 tokens, windows of 17 (14 windows, 14 tokens dropped), one query per window, cross-attention
    in every layer."""
    hc, hf = _hf(layers=2, freq=1)
    q = torch.randn(1, 1, 64) * 0.5
    model, _ = convert.load_qformer(_tensors(hf, q), hc.to_dict(), window=17)
    enc = torch.randn(2, 252, 48)
    mask = torch.ones(2, 252, dtype=torch.long)
    mask[1, 200:] = 0  # the second clip is shorter: its last windows are partly or wholly padding
    out = model(jnp.asarray(enc.numpy()), jnp.asarray(mask.numpy()))
    assert out["last_hidden_state"].shape == (2, 14, 64)
    windows = enc[:, :238].reshape(28, 17, 48)
    wmask = mask[:, :238].reshape(28, 17)
    with torch.no_grad():
        ref = hf(query_embeds=q.expand(28, -1, -1), encoder_hidden_states=windows,
                 encoder_attention_mask=wmask).last_hidden_state.reshape(2, 14, 64).numpy()
    valid = np.asarray(out["token_mask"])
    assert valid.tolist() == [[True] * 14, [True] * 12 + [False] * 2]  # window 12 starts at token 204
    assert np.abs(np.asarray(out["last_hidden_state"]) - ref)[valid].max() < 1e-4


def test_conversion_round_trip_loads_strictly_in_transformers():
    hc, hf = _hf()
    q = torch.randn(1, 4, 64)
    model, _ = convert.load_qformer(_tensors(hf, q), hc.to_dict(), window=0)
    back = convert.qformer_tensors(model)
    np.testing.assert_array_equal(back.pop("query_tokens"), q.numpy())
    _, fresh = _hf(seed=1)
    fresh.load_state_dict({k[len("qformer."):]: torch.tensor(v) for k, v in back.items()}, strict=True)
    for k, v in hf.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[k].numpy(), v.numpy())


def test_mismatched_checkpoint_names_every_key():
    hc, hf = _hf()
    t = _tensors(hf, torch.randn(1, 2, 64))
    del t["qformer.encoder.layer.0.crossattention.attention.key.weight"]
    t["qformer.encoder.layer.9.weird"] = np.zeros(3)
    with pytest.raises(ConversionError, match=r"crossattention\.attention\.key\.weight.*|layer\.9\.weird"):
        convert.load_qformer(t, hc.to_dict(), window=0)
