"""DSG-KD's export: the trained student as a transformers sequence-classification directory."""

from __future__ import annotations

import os

from kdjax.convert import save_pretrained
from kdjax.systems.dsg_kd.models import trained_classifier

_README = """# DSG-KD student exported by kdjax

From the kdjax workdir `{workdir}` (checkpoint `{checkpoint}`).

```python
import transformers
tok = transformers.AutoTokenizer.from_pretrained("{out}")
model = transformers.AutoModelForSequenceClassification.from_pretrained("{out}"{remote})
logits = model(**tok(["a clinical note"], return_tensors="pt", truncation=True)).logits
```
{remote_note}"""


def export(workdir: str, out: str) -> list[str]:
    """`out`: the student (encoder, its trained head, the tokenizer it read with) for
    `AutoModelForSequenceClassification.from_pretrained(out)`; the teacher and the width projection, which only
    training uses, are left out."""
    from kdjax.train.restore import trained_checkpoint

    model, tok = trained_classifier(workdir)
    save_pretrained(model, out)
    tok.save_pretrained(out)
    remote = model.cfg.classifier_head not in ("bert", "roberta")
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(_README.format(
            workdir=os.path.abspath(workdir), checkpoint=trained_checkpoint(workdir), out=out,
            remote=", trust_remote_code=True" if remote else "",
            remote_note=(f"\nThe head ({model.cfg.classifier_head!r}) has no transformers class: its PyTorch code is "
                         "`modeling_kdjax_bert.py` in this directory, which `trust_remote_code=True` reads (nothing is "
                         "downloaded). `AutoModel.from_pretrained` loads the encoder alone.\n") if remote else ""))
    return sorted(os.path.join(out, n) for n in os.listdir(out))
