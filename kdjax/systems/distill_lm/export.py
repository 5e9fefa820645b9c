"""distill_lm's export: the trained student as a transformers LlamaForCausalLM directory with its tokenizer."""

from __future__ import annotations

import os

from flax import nnx

from kdjax.convert import save_pretrained
from kdjax.errors import InputError

_README = """# Student LLaMA distilled by kdjax

From the kdjax workdir `{workdir}` (checkpoint `{checkpoint}`): {layers} layers, {hidden} wide.

```python
import transformers
tok = transformers.AutoTokenizer.from_pretrained("{out}")
model = transformers.AutoModelForCausalLM.from_pretrained("{out}")
```
"""


def trained_student(workdir: str):
    """The student a distill_lm run trained in `workdir` (its best parameters if kept, else its newest intact
    checkpoint) and the tokenizer it read with; built from the workdir's own config.json, nothing written."""
    from kdjax.systems.distill_lm.data import student_tokenizer
    from kdjax.systems.distill_lm.models import build_student_lm
    from kdjax.train.restore import init_params, read_params, workdir_config

    cfg = workdir_config(workdir)
    if cfg.get("system") != "distill_lm":
        raise InputError(f"{workdir}: a {cfg.get('system')!r} run, not a distill_lm one")
    tok = student_tokenizer(cfg, None, workdir)
    student = build_student_lm(cfg, tok)
    params, source = read_params(workdir)
    init_params(student, nnx.Param, params, source, prefix="lm.")  # the hidden-state projections stay behind
    return student, tok


def export(workdir: str, out: str) -> list[str]:
    """`out`: the student for `AutoModelForCausalLM.from_pretrained(out)`, its tokenizer and a README."""
    from kdjax.train.restore import trained_checkpoint

    student, tok = trained_student(workdir)
    save_pretrained(student, out)
    tok.save_pretrained(out)
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(_README.format(workdir=os.path.abspath(workdir), checkpoint=trained_checkpoint(workdir), out=out,
                               layers=student.cfg.num_hidden_layers, hidden=student.cfg.hidden_size))
    return sorted(os.path.join(out, n) for n in os.listdir(out))
