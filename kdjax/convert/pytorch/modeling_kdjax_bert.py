"""PyTorch BERT/RoBERTa sequence classifiers with the heads kdjax trains that transformers has no class for.

kdjax's export copies this file into the exported directory as `modeling_kdjax_bert.py` and names its classes in
config.json's `auto_map`, so the directory loads with

    transformers.AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)

(the code is read from DIR itself: nothing is fetched). The heads, as `kdjax.models.bert.SequenceClassifier`:

    dsg_kd       dropout -> dense -> GELU -> dropout -> out_proj, on pooler_output when the encoder has a pooler,
                 else on the first token (the DSG-KD reference code's student head)
    first_token  dropout -> linear on the first token's last hidden state (FENSE's error detector)

The encoder is transformers' own BertModel / RobertaModel; only the head is defined here. This file imports
torch and transformers only, never kdjax.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.bert.modeling_bert import BertModel, BertPreTrainedModel
from transformers.models.roberta.modeling_roberta import RobertaModel, RobertaPreTrainedModel


class KdjaxClassificationHead(nn.Module):
    """The dsg_kd head; its tensors are classifier.dense.* and classifier.out_proj.* (RoBERTa's names)."""

    def __init__(self, config, rate: float):
        super().__init__()
        self.dropout = nn.Dropout(rate)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)
        self.act = ACT2FN["gelu"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.dense(self.dropout(x)))
        return self.out_proj(self.dropout(x))


class _Classify:
    """The forward both classes share: the encoder (named by the class's base_model_prefix), then the head."""

    def _setup(self, config, encoder_cls):
        self.num_labels = config.num_labels
        setattr(self, self.base_model_prefix,
                encoder_cls(config, add_pooling_layer=bool(getattr(config, "add_pooling_layer", True))))
        self.kind = config.kdjax_classifier_head
        rate = (config.classifier_dropout if getattr(config, "classifier_dropout", None) is not None
                else config.hidden_dropout_prob)
        if self.kind == "dsg_kd":
            self.classifier = KdjaxClassificationHead(config, rate)
        elif self.kind == "first_token":  # one linear, saved as classifier.* (BERT's name)
            self.dropout = nn.Dropout(rate)
            self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        else:
            raise ValueError(f"kdjax_classifier_head={self.kind!r}: expected 'dsg_kd' or 'first_token'")
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None, **kwargs):
        out = getattr(self, self.base_model_prefix)(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, inputs_embeds=inputs_embeds, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=True)
        first = out.last_hidden_state[:, 0]
        if self.kind == "first_token":
            logits = self.classifier(self.dropout(first))
        else:
            pooled = getattr(out, "pooler_output", None)
            logits = self.classifier(pooled if pooled is not None else first)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels).float(), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                        attentions=out.attentions)


class KdjaxBertForSequenceClassification(_Classify, BertPreTrainedModel):
    def __init__(self, config):
        BertPreTrainedModel.__init__(self, config)
        self._setup(config, BertModel)


class KdjaxRobertaForSequenceClassification(_Classify, RobertaPreTrainedModel):
    def __init__(self, config):
        RobertaPreTrainedModel.__init__(self, config)
        self._setup(config, RobertaModel)
