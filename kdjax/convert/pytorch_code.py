"""Where the PyTorch code kdjax's exports ship lives: `kdjax/convert/pytorch/`, a folder of plain files (no
`__init__.py`, so importing kdjax never imports torch), each copied into the directories that need it:

    modeling_kdjax_bert.py   BERT/RoBERTa classifiers with kdjax's heads (transformers' trust_remote_code)
    modeling_effaac.py       EffAAC's EffNet-Trm student, its front end and decoding

Tests import them as `kdjax.convert.pytorch.<name>` (an implicit namespace package)."""

import os

PYTORCH_CODE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pytorch")
