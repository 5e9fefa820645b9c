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


# ------------------------------------------------------------------------------------- load / save
def load(path: str, *, seed: int = 0, mesh=None, **overrides):
    """A LlamaForCausalLM directory, one tensor at a time; with `mesh`, each tensor goes straight to its shards
    (a 7B model never exists whole on one host device)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from kdjax.convert.checkpoint_io import LazyTensors, read_config
    from kdjax.convert.common import load_family
    from kdjax.models.llama import LlamaForCausalLM

    cfg = LlamaConfig.from_hf(read_config(path), **overrides)
    dtype = jnp.dtype(cfg.param_dtype)
    put = lambda name, x: jnp.asarray(x, dtype)
    if mesh is not None:
        from kdjax.models import state as state_lib
        from kdjax.models.llama import LOGICAL_AXES
        from kdjax.train import sharding as shd

        abstract = state_lib.abstract_module(lambda: LlamaForCausalLM(cfg, rngs=nnx.Rngs(seed)))
        shapes = {k: v.shape for k, v in state_lib.flatten(nnx.state(abstract)).items()}
        specs = shd.param_specs({k: jax.ShapeDtypeStruct(v, dtype) for k, v in shapes.items()}, mesh, LOGICAL_AXES)
        put = lambda name, x: jax.device_put(np.asarray(x, dtype), shd.named(mesh, specs[name]))
    return load_family(LazyTensors(path), lambda: LlamaForCausalLM(cfg, rngs=nnx.Rngs(seed)), rules(cfg), ignore(cfg),
                       path, put=put)


def save(model, out_dir: str, *, tokenizer_dir: str | None = None) -> None:
    """A LlamaForCausalLM directory (bfloat16 written as float32). A model with LoRA adapters is refused: save
    them with kdjax.convert.peft.save_adapters, or save kdjax.models.lora.merged_copy(model)."""
    from kdjax.convert.common import host_flat, write_dir
    from kdjax.convert.param_map import HFView
    from kdjax.models.lora import layers as lora_layers

    if lora_layers(model):
        raise ValueError("this model has LoRA adapters: save them with kdjax.convert.peft.save_adapters, or "
                         "save kdjax.models.lora.merged_copy(model) for a plain merged checkpoint")
    write_dir(out_dir, HFView(host_flat(model), rules(model.cfg)), model.cfg.to_hf(), tokenizer_dir=tokenizer_dir)


def _register():
    from kdjax.convert import registry
    from kdjax.models.llama import LlamaForCausalLM

    registry.register(registry.Family(
        "llama", MODEL_TYPES, (LlamaForCausalLM,),
        lambda path, *, task=None, arch=None, seed=0, mesh=None, **kw: load(path, seed=seed, mesh=mesh, **kw), save))


_register()
