"""Which student layer learns from which teacher layer: the layer maps of hidden-state distillation (DSG-KD's L_hidn
and L_attn, distill_lm's hidden-state MSE), over hidden_states indices (0 = embeddings .. num_layers)."""

from __future__ import annotations

from kdjax.errors import InputError


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """Pairs (student index, teacher index) over hidden_states (0 = embeddings .. num_layers).

    Equal depths pair layer by layer; otherwise student layer s reads teacher layer
    round(s * teacher_layers / student_layers) (TinyBERT's uniform strategy)."""
    return [(s, int(round(s * teacher_layers / student_layers))) for s in range(student_layers + 1)]


def layer_map(spec: str, student_layers: int, teacher_layers: int, key: str = "kd.layer_map"
              ) -> list[tuple[int, int]]:
    """'uniform' or explicit 's:t,s:t,...' over hidden_states indices (0 = embeddings); `key` names the config key in
    errors."""
    if spec == "uniform":
        return uniform_layer_map(student_layers, teacher_layers)
    try:
        pairs = [tuple(int(v) for v in p.split(":")) for p in spec.split(",") if p.strip()]
    except ValueError:
        raise InputError(f"{key}={spec!r}: 'uniform' or pairs 's:t,s:t,...' of layer indices") from None
    for pair in pairs:
        if len(pair) != 2:
            raise InputError(f"{key}={spec!r}: 'uniform' or pairs 's:t,s:t,...' of layer indices")
        s, t = pair
        if not (0 <= s <= student_layers and 0 <= t <= teacher_layers):
            raise InputError(f"{key} pair {s}:{t} is outside 0..{student_layers} / 0..{teacher_layers}")
    return pairs
