"""A RoBERTa whose attention heads and FFN neurons can be masked, reordered, narrowed and densified.

RoBERTa's layers are BERT's, so the narrowable layers, encoder and narrowing logic are those of
`sparse_bert`; what differs is around them: the embeddings (position ids counted from
`padding_idx + 1`, one token type), no pooler, and the sequence head (dense + tanh + out_proj
over `<s>`). Parameter names are those of transformers' `RobertaModel`,
`RobertaForSequenceClassification` and `RobertaForTokenClassification`, so any RoBERTa
checkpoint folder loads.

`save_pretrained` copies this file and `sparse_bert.py` (its relative import) beside the
weights and names the classes in config.json's `auto_map` (model type `minidisc_roberta`), so
transformers' Auto classes load the checkpoint with `trust_remote_code=True` without MiniDisc.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import RobertaConfig
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput
from transformers.models.roberta.modeling_roberta import (
    RobertaClassificationHead,
    RobertaEmbeddings,
    RobertaPooler,
    RobertaPreTrainedModel,
)

from .sparse_bert import MiniDiscConfigMixin, NarrowableEncoderMixin, NarrowableTaskMixin


class MiniDiscRobertaConfig(MiniDiscConfigMixin, RobertaConfig):
    """A RoBERTa config of its own model type; extra keys as `MiniDiscBertConfig`'s
    (`layer_heads`, `layer_neurons`, `sparsity`, `sparsity_map`, `task_name`)."""

    model_type = "minidisc_roberta"
    plain_types = ("roberta",)


class SparseRobertaModel(NarrowableEncoderMixin, RobertaPreTrainedModel):
    """RoBERTa embeddings + narrowable encoder (+ pooler); returns every hidden state."""

    config_class = MiniDiscRobertaConfig

    def __init__(self, config: RobertaConfig, add_pooling_layer: bool = True):
        super().__init__(MiniDiscRobertaConfig.coerce(config))
        self._init_encoder(RobertaEmbeddings(self.config),
                           RobertaPooler(self.config) if add_pooling_layer else None)


class SparseRobertaForSequenceClassification(NarrowableTaskMixin, RobertaPreTrainedModel):
    """Sentence(-pair) classification or regression from `<s>` through RoBERTa's head."""

    config_class = MiniDiscRobertaConfig
    pooled = True  # one output per sequence
    output_cls = SequenceClassifierOutput

    def __init__(self, config: RobertaConfig):
        super().__init__(MiniDiscRobertaConfig.coerce(config))
        self.roberta = SparseRobertaModel(self.config, add_pooling_layer=False)
        self.classifier = RobertaClassificationHead(self.config)
        self.post_init()

    def _logits(self, hidden: list[torch.Tensor], pooled: torch.Tensor | None,
                attention_mask: torch.Tensor | None) -> torch.Tensor:
        return self.classifier(hidden[-1])  # RoBERTa's head reads `<s>` itself


class SparseRobertaForTokenClassification(NarrowableTaskMixin, RobertaPreTrainedModel):
    """Per-token tagging (NER)."""

    config_class = MiniDiscRobertaConfig
    pooled = False
    output_cls = TokenClassifierOutput

    def __init__(self, config: RobertaConfig):
        super().__init__(MiniDiscRobertaConfig.coerce(config))
        config = self.config
        self.roberta = SparseRobertaModel(config, add_pooling_layer=False)
        drop = config.classifier_dropout
        self.dropout = nn.Dropout(config.hidden_dropout_prob if drop is None else drop)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _logits(self, hidden: list[torch.Tensor], pooled: torch.Tensor | None,
                attention_mask: torch.Tensor | None) -> torch.Tensor:
        return self.classifier(self.dropout(hidden[-1]))


# save_pretrained copies this file (and sparse_bert.py) and fills config.json's auto_map.
MiniDiscRobertaConfig.register_for_auto_class()
SparseRobertaForSequenceClassification.register_for_auto_class(
    "AutoModelForSequenceClassification")
SparseRobertaForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")
