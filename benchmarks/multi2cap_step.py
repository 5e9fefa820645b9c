"""Multi2Cap smoke-size train step and captioning: kdjax against an equivalent PyTorch stack, same run.

Train step = CED-tiny (4 blocks, LoRA on attention) -> windowed Q-Former (2 layers x 192) -> projector ->
LLaMA decoder with LoRA on q/v (SmolLM2-135M's real weights when installed, else the smoke config's random
tiny LLaMA), + the small ResNet image teacher, the CFD heads and the triplet loss; forward, backward and
AdamW (clip 1.0) on the trainable parameters only; batch 8, 4-s clips, 24 caption tokens, 112-px images.
kdjax runs the Trainer's own jitted step on a batch from its own pipeline. PyTorch runs the same shapes:
the reference CED (tests/torch_ced.py; its attention projection is fused, so peft's LoRA sits on the fused
qkv), transformers' Blip2QFormerModel over the windows, LlamaForCausalLM with peft LoRA (r 8, alpha 32,
dropout 0.1, q_proj/v_proj), ResNetModel, torch.optim.AdamW.

Captioning = the decoder's beam search (3 beams) from the same prompt embeddings (prefix, audio tokens,
suffix) for 8 clips, min = max = 30 new tokens so both sides generate the same number of tokens: kdjax's
jitted `generate` against transformers' `generate(inputs_embeds=...)`.

Both stacks are built first and then take turns (`benchmarks.common.interleaved`): each round times a few
kdjax steps and a few PyTorch steps, alternating which goes first, and the speedups are medians of per-round
ratios, so load that drifts on a shared machine falls on both sides alike. Prints one JSON line.

    python benchmarks/multi2cap_step.py [--rounds 6]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (add_device_args, device_fields, interleaved, round_ratio, torch_autocast,  # noqa: E402
                               torch_device, torch_sync, use_device, xla_flops)

NEW_TOKENS, BEAMS = 30, 3


def kdjax_side(cfg, workdir: str):
    """(train step, caption) callables that block until done, plus the batch and prompt they use."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from kdjax.models.generate import GenerateConfig, generate
    from kdjax.systems import multi2cap
    from kdjax.train import sharding as shd
    from kdjax.train.trainer import Trainer

    task = multi2cap.build(cfg, workdir)
    trainer = Trainer(cfg, task, workdir)
    batch_np = next(trainer.train_iterator())
    batch = shd.global_batch(batch_np, trainer.mesh)
    state = {"s": trainer.state}

    def step():
        state["s"], m = trainer.train_step(state["s"], trainer.frozen_state, trainer.teacher_state, batch)
        jax.block_until_ready(m["loss"])

    flops = xla_flops(trainer.train_step, state["s"], trainer.frozen_state, trainer.teacher_state, batch)
    step()  # compile before the prompt is taken from the (then trained) model
    model = trainer._merge(state["s"]["params"], state["s"]["rest"], trainer.frozen_state)
    a = model.encode_audio(batch["wave"], batch["mask"])
    x, m = model.prompt(a["audio_tokens"], a["audio_mask"])
    eos = model.decoder.cfg.eos_token_id
    gen = GenerateConfig(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, num_beams=BEAMS,
                         eos_token_id=eos if isinstance(eos, int) else eos[0], pad_token_id=0)
    gdef, dstate = nnx.split(model.decoder)
    dstate = jax.tree.map(jnp.copy, dstate)  # the train step donates (deletes) the arrays it was given
    run = jax.jit(lambda s, x, m: generate(nnx.merge(gdef, s), x, m, gen))
    caption = lambda: jax.block_until_ready(run(dstate, x, m))
    return step, caption, batch_np, np.asarray(x, np.float32), np.asarray(m), flops


def torch_side(cfg, batch_np, prompt_x, prompt_m, args):
    """(train step, caption) callables of the equivalent PyTorch stack on args.device (None, None on a TPU)."""
    dev = torch_device(args)
    if dev is None:
        return None, None
    import peft
    import torch
    import transformers

    from kdjax import assets
    from tests.torch_ced import TorchCED

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    ced = TorchCED("ced_tiny", num_classes=0, chunk_mode="concat")
    ced.blocks = torch.nn.Sequential(*list(ced.blocks)[:int(cfg.audio.depth)])
    ced = peft.get_peft_model(ced, peft.LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1, target_modules=["qkv"]))
    q = cfg.qformer
    qf = transformers.Blip2QFormerModel(transformers.Blip2QFormerConfig(
        hidden_size=q.hidden_size, num_hidden_layers=q.num_hidden_layers, num_attention_heads=q.num_attention_heads,
        intermediate_size=q.intermediate_size, cross_attention_frequency=1, encoder_hidden_size=192,
        hidden_dropout_prob=q.hidden_dropout_prob, attention_probs_dropout_prob=q.attention_probs_dropout_prob))
    query = torch.nn.Parameter(torch.randn(1, 1, q.hidden_size) * 0.02)
    if cfg.decoder.checkpoint:
        llm = transformers.LlamaForCausalLM.from_pretrained(assets.model_dir(cfg.decoder.checkpoint),
                                                            dtype=torch.float32)
    else:
        r = dict(cfg.decoder.random)
        llm = transformers.LlamaForCausalLM(transformers.LlamaConfig(vocab_size=64, **r))
    llm = peft.get_peft_model(llm, peft.LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1,
                                                   target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    hidden = llm.config.hidden_size
    proj = torch.nn.Linear(q.hidden_size, hidden)
    t = dict(cfg.teacher.random)
    teacher = transformers.ResNetModel(transformers.ResNetConfig(
        embedding_size=t["embedding_size"], hidden_sizes=list(t["hidden_sizes"]), depths=list(t["depths"]),
        layer_type=t["layer_type"])).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    cfd_a, cfd_i = torch.nn.Linear(192, int(cfg.cfd.dim)), torch.nn.Linear(t["hidden_sizes"][-1], int(cfg.cfd.dim))
    modules = [ced, qf, proj, cfd_a, cfd_i, llm]
    for mod in [*modules, teacher]:
        mod.to(dev)
    query = torch.nn.Parameter(query.detach().to(dev))
    params = [p for m in modules for p in m.parameters() if p.requires_grad] + [query]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    triplet = torch.nn.TripletMarginLoss(margin=1.0)
    b = {k: torch.tensor(np.asarray(v), device=dev) for k, v in batch_np.items()}
    images = b["image"].permute(0, 3, 1, 2).contiguous()
    embed = llm.get_input_embeddings()
    pre, suf = cfg_prompt_ids(cfg)
    pre_ids, suf_ids = torch.tensor(pre, device=dev), torch.tensor(suf, device=dev)
    window = int(q.window)
    for m in modules:
        m.train()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch_autocast(args, dev):
            loss = forward()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        torch_sync(dev)

    def forward():
        enc = ced(b["wave"])["last_hidden_state"]  # (b, n, 192)
        nb, n, e = enc.shape
        w = n // window
        win = enc[:, :w * window].reshape(nb * w, window, e)
        qo = qf(query_embeds=query.expand(nb * w, -1, -1), encoder_hidden_states=win).last_hidden_state
        audio = proj(qo.reshape(nb, w, -1))
        cap = b["caption_ids"].long()
        x = torch.cat([embed(pre_ids).expand(nb, -1, -1), audio, embed(suf_ids).expand(nb, -1, -1), embed(cap)], 1)
        mask = torch.cat([torch.ones(nb, x.shape[1] - cap.shape[1], dtype=torch.long, device=dev),
                          b["caption_mask"].long()], 1)
        p = x.shape[1] - cap.shape[1]
        # logits at the caption positions only (transformers' logits_to_keep), as kdjax: the full-sequence
        # vocabulary projection would cost PyTorch ~20 GFLOP per step that kdjax does not spend
        logits = llm(inputs_embeds=x, attention_mask=mask,
                     logits_to_keep=torch.arange(p - 1, p - 1 + cap.shape[1], device=dev)).logits.float()
        l_cap = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), cap.reshape(-1),
                                                  reduction="none")
        cm = b["caption_mask"].float().reshape(-1)
        l_cap = (l_cap * cm).sum() / cm.sum()
        with torch.no_grad():
            img = teacher(pixel_values=images).pooler_output.flatten(1)
        a_, i_ = cfd_a(enc.mean(1)), cfd_i(img)
        return l_cap + 0.5 * triplet(i_, a_, a_.roll(-1, 0))

    base = llm.get_base_model()
    x = torch.tensor(prompt_x, device=dev)
    m = torch.tensor(prompt_m, device=dev).long()

    @torch.no_grad()
    def caption():
        llm.eval()  # generation without dropout; the train step switches back
        with torch_autocast(args, dev):
            base.generate(inputs_embeds=x, attention_mask=m, num_beams=BEAMS, do_sample=False,
                          max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, pad_token_id=0)
        torch_sync(dev)
        llm.train()

    return step, caption


def cfg_prompt_ids(cfg):
    from kdjax.systems import multi2cap

    tok = multi2cap.build_tokenizer(cfg, ["a"], tempfile.mkdtemp())
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    return bos + enc(cfg.prompt.prefix), enc(cfg.prompt.suffix)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6, help="rounds of turns; each times 2 steps / 1 caption per side")
    add_device_args(ap)
    args = ap.parse_args()
    use_device(args)
    from configs.multi2cap import get_config

    cfg = get_config("smoke")
    if args.dtype == "bfloat16":  # compute dtype; parameters stay float32
        cfg.decoder.dtype = "bfloat16"
        cfg.qformer.dtype = "bfloat16"
        cfg.audio.overrides = {**dict(cfg.audio.overrides), "dtype": "bfloat16"}
    with tempfile.TemporaryDirectory() as work:
        k_step, k_gen, batch, px, pm, flops = kdjax_side(cfg, work)
        t_step, t_gen = torch_side(cfg, batch, px, pm, args)
        sides = lambda k, t: {"kdjax": k, **({"torch": t} if t is not None else {})}  # noqa: E731
        steps = interleaved(sides(k_step, t_step), rounds=args.rounds, reps=2)
        gens = interleaved(sides(k_gen, t_gen), rounds=max(2, args.rounds // 2), reps=1)
    print("per-round seconds:", json.dumps({"step": steps, "caption": gens}), file=sys.stderr)
    med = lambda v: float(np.median(v))
    b = int(cfg.train.batch_size)
    gen_tokens = px.shape[0] * NEW_TOKENS
    torch_ran = "torch" in steps
    row = {"benchmark": "multi2cap_step", "decoder": cfg.decoder.checkpoint or "random tiny LLaMA", "batch": b,
           "rounds": args.rounds, "kdjax_step_s": round(med(steps["kdjax"]), 4),
           "torch_step_s": round(med(steps["torch"]), 4) if torch_ran else None,
           "kdjax_samples_per_s": round(b / med(steps["kdjax"]), 3),
           "torch_samples_per_s": round(b / med(steps["torch"]), 3) if torch_ran else None,
           "train_speedup": round(round_ratio(steps, "torch", "kdjax"), 3) if torch_ran else None,
           "kdjax_caption_tokens_per_s": round(gen_tokens / med(gens["kdjax"]), 2),
           "torch_caption_tokens_per_s": round(gen_tokens / med(gens["torch"]), 2) if torch_ran else None,
           "caption_speedup": round(round_ratio(gens, "torch", "kdjax"), 3) if torch_ran else None,
           "kdjax_step_gflop": round(flops / 1e9, 2) if flops else None,
           **device_fields(args, flops or 0.0, med(steps["kdjax"]), med(steps["torch"]) if torch_ran else None)}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
