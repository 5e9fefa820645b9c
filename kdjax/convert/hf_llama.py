"""Parameter map between transformers' LlamaForCausalLM and kdjax.models.llama (identity on module paths, but
for the layer index of a scanned stack, which becomes the tensors' leading axis)."""

from __future__ import annotations

from kdjax.convert.param_map import Entry, TensorRule, expand
from kdjax.models.llama import LlamaConfig

MODEL_TYPES = ("llama", "mistral")


def entries(cfg: LlamaConfig) -> list[Entry]:
    attn = "linear" if cfg.attention_bias else "linear_nobias"
    mlp = "linear" if cfg.mlp_bias else "linear_nobias"
    layer = "model.layers.{i}."
    fx = "model.layers." if cfg.scan_layers else layer  # a scanned stack: layer i is slice i of each tensor
    out = [Entry("model.embed_tokens", "model.embed_tokens", "embed"),
           Entry("model.norm", "model.norm", "rmsnorm")]
    out += [Entry(f"{layer}self_attn.{n}", f"{fx}self_attn.{n}", attn) for n in ("q_proj", "k_proj", "v_proj",
                                                                                "o_proj")]
    out += [Entry(f"{layer}mlp.{n}", f"{fx}mlp.{n}", mlp) for n in ("gate_proj", "up_proj", "down_proj")]
    out += [Entry(f"{layer}{n}", f"{fx}{n}", "rmsnorm") for n in ("input_layernorm", "post_attention_layernorm")]
    if not cfg.tie_word_embeddings:
        out.append(Entry("lm_head", "lm_head", "linear_nobias"))
    return out


def rules(cfg: LlamaConfig) -> list[TensorRule]:
    return expand(entries(cfg), cfg.num_hidden_layers)


def ignore(cfg: LlamaConfig) -> tuple[str, ...]:
    """Checkpoint tensors that are known and unused: rotary buffers of old checkpoints, and the output
    matrix that tied checkpoints sometimes still carry (it equals the embedding)."""
    return ("*rotary_emb.inv_freq",) + (("lm_head.weight",) if cfg.tie_word_embeddings else ())
