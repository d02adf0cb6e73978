"""A BERT whose attention heads and FFN neurons can be masked, reordered, narrowed and densified.

Parameter names are those of transformers' `BertModel`, so any BERT checkpoint loads into it
and its checkpoints load back into plain `BertModel`-based classes when not densified.
Per-layer widths live in the config (`layer_heads`, `layer_neurons`), so a densified model with
ragged layers round-trips through `save_pretrained`/`from_pretrained`.

Narrowing keeps the *first* units of each layer: `sparsify()` slices the weights in forward
(cheap to switch, used by the sandwich; the slices already save the FLOPs), `densify()` copies
the kept slices into smaller tensors (less memory, small checkpoints). A layer left with no
heads or no neurons keeps only its residual path plus the output bias, identically in both.

`save_pretrained` copies this file beside the weights and names its classes in config.json's
`auto_map` (model type `minidisc_bert`), so transformers' Auto classes load any checkpoint of
this project with `trust_remote_code=True` in a process without MiniDisc. That is why this
module imports only torch and transformers (MiniDisc's error type only where it is installed).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertPreTrainedModel, PretrainedConfig
from transformers.activations import ACT2FN
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput
from transformers.models.bert.modeling_bert import BertEmbeddings, BertPooler

try:  # inside MiniDisc a bad sparsity is a user error (one line, exit 2)
    from minidisc.errors import MiniDiscError
except ImportError:  # the copy saved beside a checkpoint, loaded without MiniDisc
    MiniDiscError = ValueError

SparsityMap = dict[str, dict[str, list[int]]]


class MiniDiscConfigMixin:
    """A family's config of its own model type (so Auto classes pick the narrowable models)
    that also reads the plain family's config.json (model types `plain_types`) without
    transformers' model-type mismatch warning."""

    plain_types: tuple[str, ...] = ()

    def __post_init__(self, **kwargs: Any) -> None:
        kwargs.pop("model_type", None)  # a plain config names the plain type: keep the class's
        super().__post_init__(**kwargs)

    @classmethod
    def get_config_dict(cls, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        config, kwargs = super().get_config_dict(*args, **kwargs)
        if config.get("model_type") in cls.plain_types:
            config = {k: v for k, v in config.items() if k != "model_type"}
        return config, kwargs

    @classmethod
    def coerce(cls, config: PretrainedConfig) -> PretrainedConfig:
        """Any config of the family as this model type (the models re-type a plain one)."""
        return config if isinstance(config, cls) else cls.from_dict(config.to_dict())


class MiniDiscBertConfig(MiniDiscConfigMixin, BertConfig):
    """A BERT config of its own model type (a plain BERT class cannot hold ragged layers);
    reads plain BERT config.json (MiniLM, checkpoints from before this type). Extra keys:
    `layer_heads`/`layer_neurons` (physical widths of a densified model), `sparsity`,
    `sparsity_map`, `task_name`."""

    model_type = "minidisc_bert"
    plain_types = ("bert",)


def sparsity_key(s: float) -> str:
    """Sparsities are numbers; the map's JSON keys are their `%g` strings."""
    return f"{float(s):g}"


def map_entry(config: PretrainedConfig, sparsity: float) -> dict[str, list[int]]:
    """The map's entry at `sparsity`: heads and neurons each layer loses (a one-line error when
    the model is not prunable or the sparsity is not in its map)."""
    smap = getattr(config, "sparsity_map", None)
    if not smap:
        raise MiniDiscError(
            "the model is not prunable (its config has no sparsity_map): "
            "run --mode sparsify on it first"
        )
    entry = smap.get(sparsity_key(sparsity))
    if entry is None:
        avail = ", ".join(f"{s:g}" for s in sorted(float(k) for k in smap))
        raise MiniDiscError(f"sparsity {sparsity:g} is not in the sparsity map (have: {avail})")
    return entry


def keep_counts(config: BertConfig, sparsity: float) -> tuple[list[int], list[int]]:
    """Heads and neurons each layer keeps at `sparsity` (map counts are removals relative to
    the original full model)."""
    entry = map_entry(config, sparsity)
    heads = [config.num_attention_heads - r for r in entry["heads"]]
    neurons = [config.intermediate_size - r for r in entry["neurons"]]
    return heads, neurons


def truncate_map(smap: SparsityMap, sparsity: float) -> SparsityMap:
    """Entries at or above `sparsity`: what a model densified at `sparsity` can still reach."""
    return {k: v for k, v in smap.items() if float(k) >= float(sparsity)}


def layer_widths(config: BertConfig) -> tuple[list[int], list[int]]:
    """Heads and FFN neurons each layer physically has."""
    n = config.num_hidden_layers
    heads = list(getattr(config, "layer_heads", None) or [config.num_attention_heads] * n)
    neurons = list(getattr(config, "layer_neurons", None) or [config.intermediate_size] * n)
    return heads, neurons


def padding_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, 1, T) additive attention mask: 0 on tokens, the dtype's minimum on padding."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def _slice_linear(linear: nn.Linear, rows: int | None = None, cols: int | None = None) -> nn.Linear:
    """A new Linear holding the first `rows` outputs / first `cols` inputs of `linear`."""
    w = linear.weight[: rows if rows is not None else None, : cols if cols is not None else None]
    b = linear.bias[:rows] if rows is not None else linear.bias
    new = torch.nn.utils.skip_init(nn.Linear, w.shape[1], w.shape[0], device=w.device,
                                   dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        new.bias.copy_(b)
    return new


class SparseBertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig, num_heads: int):
        super().__init__()
        self.head_size = config.hidden_size // config.num_attention_heads
        self.num_heads = num_heads
        width = num_heads * self.head_size
        self.query = nn.Linear(config.hidden_size, width)
        self.key = nn.Linear(config.hidden_size, width)
        self.value = nn.Linear(config.hidden_size, width)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, bias: torch.Tensor, heads: int,
                head_mask: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        w = heads * self.head_size
        if heads == 0:
            return x.new_zeros(b, t, 0)

        def proj(lin: nn.Linear) -> torch.Tensor:
            y = F.linear(x, lin.weight[:w], lin.bias[:w])
            return y.view(b, t, heads, self.head_size).transpose(1, 2)

        ctx = F.scaled_dot_product_attention(
            proj(self.query), proj(self.key), proj(self.value), attn_mask=bias,
            dropout_p=self.dropout_p if self.training else 0.0,
        )
        if head_mask is not None:
            ctx = ctx * head_mask[:heads].view(1, heads, 1, 1)
        return ctx.transpose(1, 2).reshape(b, t, w)


class SparseBertSelfOutput(nn.Module):
    def __init__(self, config: BertConfig, in_width: int):
        super().__init__()
        self.dense = nn.Linear(in_width, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        h = F.linear(h, self.dense.weight[:, : h.shape[-1]], self.dense.bias)
        return self.LayerNorm(self.dropout(h) + residual)


class SparseBertAttention(nn.Module):
    def __init__(self, config: BertConfig, num_heads: int):
        super().__init__()
        self.self = SparseBertSelfAttention(config, num_heads)
        self.output = SparseBertSelfOutput(config, num_heads * self.self.head_size)


class SparseBertIntermediate(nn.Module):
    def __init__(self, config: BertConfig, neurons: int):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, neurons)
        self.act = ACT2FN[config.hidden_act]


class SparseBertLayer(nn.Module):
    def __init__(self, config: BertConfig, num_heads: int, neurons: int):
        super().__init__()
        self.attention = SparseBertAttention(config, num_heads)
        self.intermediate = SparseBertIntermediate(config, neurons)
        self.output = SparseBertSelfOutput(config, neurons)

    @property
    def num_heads(self) -> int:
        return self.attention.self.num_heads

    @property
    def num_neurons(self) -> int:
        return self.intermediate.dense.out_features

    def forward(self, x: torch.Tensor, bias: torch.Tensor, heads: int, neurons: int,
                head_mask: torch.Tensor | None, neuron_mask: torch.Tensor | None) -> torch.Tensor:
        ctx = self.attention.self(x, bias, heads, head_mask)
        x = self.attention.output(ctx, x)
        inter = self.intermediate.dense
        h = self.intermediate.act(F.linear(x, inter.weight[:neurons], inter.bias[:neurons]))
        if neuron_mask is not None:
            h = h * neuron_mask[:neurons]
        return self.output(h, x)

    def reorder(self, head_order: torch.Tensor, neuron_order: torch.Tensor) -> None:
        """Permute heads and neurons; the layer computes the same function afterwards."""
        hs = self.attention.self.head_size
        rows = (head_order.view(-1, 1) * hs + torch.arange(hs, device=head_order.device)).view(-1)
        with torch.no_grad():
            for lin in (self.attention.self.query, self.attention.self.key,
                        self.attention.self.value):
                lin.weight.copy_(lin.weight[rows])
                lin.bias.copy_(lin.bias[rows])
            out = self.attention.output.dense
            out.weight.copy_(out.weight[:, rows])
            inter = self.intermediate.dense
            inter.weight.copy_(inter.weight[neuron_order])
            inter.bias.copy_(inter.bias[neuron_order])
            self.output.dense.weight.copy_(self.output.dense.weight[:, neuron_order])

    def densify(self, heads: int, neurons: int) -> None:
        """Replace the weights with their first `heads`/`neurons` slices."""
        att = self.attention.self
        w = heads * att.head_size
        att.query, att.key, att.value = (
            _slice_linear(att.query, rows=w), _slice_linear(att.key, rows=w),
            _slice_linear(att.value, rows=w))
        att.num_heads = heads
        self.attention.output.dense = _slice_linear(self.attention.output.dense, cols=w)
        self.intermediate.dense = _slice_linear(self.intermediate.dense, rows=neurons)
        self.output.dense = _slice_linear(self.output.dense, cols=neurons)


class SparseBertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        heads, neurons = layer_widths(config)
        with warnings.catch_warnings():  # a layer pruned to no heads or neurons: empty weights
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            self.layer = nn.ModuleList(SparseBertLayer(config, h, n)
                                       for h, n in zip(heads, neurons))


class NarrowableEncoderMixin:
    """Narrowing, reordering and forward of an encoder made of `SparseBertLayer`s, for every
    family whose layers are BERT's (BERT, RoBERTa): the family's base model only provides
    `embeddings`, `encoder` and an optional `pooler`. This is the interface the compression
    code relies on (`minidisc.models.families.NarrowableBase`). Other layer kinds (T5's
    blocks) reuse the narrowing with their own `layers_attr`, `per_layer_keys`,
    `encoder_params` and forward: a layer needs `num_heads`, `num_neurons`, `reorder` and
    `densify`."""

    supports_gradient_checkpointing = True
    config: PretrainedConfig
    embeddings: nn.Module
    encoder: SparseBertEncoder
    pooler: nn.Module | None
    active: tuple[list[int], list[int]] | None  # virtual widths per layer
    active_sparsity: float
    layers_attr = "layer"  # the encoder's list of narrowable layers
    per_layer_keys: tuple[str, ...] = ("layer_heads", "layer_neurons")  # config lists, by layer

    @property
    def layers(self) -> nn.ModuleList:
        """The narrowable layers, bottom first."""
        return getattr(self.encoder, self.layers_attr)

    def _init_encoder(self, embeddings: nn.Module, pooler: nn.Module | None) -> None:
        """A BERT-layer family's base model: its embeddings and pooler around the narrowable
        encoder, then transformers' weight init."""
        self.embeddings = embeddings
        self.encoder = SparseBertEncoder(self.config)
        self.pooler = pooler
        self._init_narrowing()
        self.post_init()

    def _init_narrowing(self) -> None:
        self.gradient_checkpointing = False  # set by gradient_checkpointing_enable()
        self.active = None
        self.active_sparsity = float(getattr(self.config, "sparsity", 0) or 0)

    # --- narrowing ---------------------------------------------------------------------
    def widths(self) -> tuple[list[int], list[int]]:
        """The widths forward uses now (virtual if narrowed, else physical)."""
        if self.active is not None:
            return self.active
        return self.physical_widths()

    def physical_widths(self) -> tuple[list[int], list[int]]:
        """Heads and FFN neurons each layer's weights hold."""
        return ([lay.num_heads for lay in self.layers],
                [lay.num_neurons for lay in self.layers])

    def encoder_params(self, heads: Sequence[int], neurons: Sequence[int]) -> int:
        """Parameters of the narrowable layers at these per-layer widths."""
        cfg = self.config
        return encoder_params(cfg.hidden_size, cfg.hidden_size // cfg.num_attention_heads,
                              heads, neurons)

    def sparsify(self, sparsity: float | None) -> None:
        """Narrow virtually to a sparsity of the map (None: back to the physical widths)."""
        if sparsity is None:
            self.active = None
            self.active_sparsity = float(getattr(self.config, "sparsity", 0) or 0)
            return
        sparsity = float(sparsity)
        heads, neurons = keep_counts(self.config, sparsity)
        for i, lay in enumerate(self.layers):
            if heads[i] > lay.num_heads or neurons[i] > lay.num_neurons:
                raise MiniDiscError(
                    f"sparsity {sparsity:g} is below this model's own sparsity "
                    f"{float(self.config.sparsity):g}: cannot widen a densified model"
                )
        self.active = (heads, neurons)
        self.active_sparsity = sparsity

    def densify(self) -> None:
        """Make the current virtual narrowing physical and record it in the config."""
        if self.active is None:
            return
        for lay, h, n in zip(self.layers, *self.active):
            lay.densify(h, n)
        self._record_widths()
        self.config.sparsity = self.active_sparsity
        self.config.sparsity_map = truncate_map(self.config.sparsity_map, self.active_sparsity)
        self.active = None

    def _record_widths(self) -> None:
        """The physical widths into the config, so save/load rebuilds the layers."""
        self.config.layer_heads, self.config.layer_neurons = self.physical_widths()

    def reorder(self, head_importance: Sequence[torch.Tensor],
                neuron_importance: Sequence[torch.Tensor]) -> None:
        """Sort every layer's heads and neurons by importance, most important first."""
        for lay, hi, ni in zip(self.layers, head_importance, neuron_importance):
            lay.reorder(torch.argsort(hi.to(self.device), descending=True, stable=True),
                        torch.argsort(ni.to(self.device), descending=True, stable=True))

    def keep_layers(self, n: int) -> None:
        """Keep the bottom `n` layers; the config (shared with the task model) follows."""
        setattr(self.encoder, self.layers_attr, self.layers[:n])
        cfg = self.config
        cfg.num_hidden_layers = n
        for name in self.per_layer_keys:
            if getattr(cfg, name, None):
                setattr(cfg, name, list(getattr(cfg, name))[:n])
        if getattr(cfg, "sparsity_map", None):
            cfg.sparsity_map = {k: {kind: v[:n] for kind, v in entry.items()}
                                for k, entry in cfg.sparsity_map.items()}
        if self.active is not None:
            self.active = (self.active[0][:n], self.active[1][:n])

    # --- forward -----------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                head_mask: torch.Tensor | None = None,
                neuron_mask: torch.Tensor | None = None,
                ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        hidden = self.run_layers(x, padding_bias(attention_mask, x.dtype), head_mask,
                                 neuron_mask)
        pooled = self.pooler(hidden[-1]) if self.pooler is not None else None
        return hidden, pooled

    def run_layers(self, x: torch.Tensor, bias: torch.Tensor, head_mask: torch.Tensor | None,
                   neuron_mask: torch.Tensor | None) -> list[torch.Tensor]:
        """`x` and each layer's output, at the widths forward uses now; under gradient
        checkpointing each layer is recomputed in the backward instead of kept."""
        heads, neurons = self.widths()
        hidden = [x]
        for i, lay in enumerate(self.layers):
            args = (x, bias, heads[i], neurons[i], None if head_mask is None else head_mask[i],
                    None if neuron_mask is None else neuron_mask[i])
            if self.gradient_checkpointing and self.training:
                x = self._gradient_checkpointing_func(lay.__call__, *args)
            else:
                x = lay(*args)
            hidden.append(x)
        return hidden


class SparseBertModel(NarrowableEncoderMixin, BertPreTrainedModel):
    """Embeddings + narrowable encoder (+ pooler); returns every hidden state."""

    config_class = MiniDiscBertConfig

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(MiniDiscBertConfig.coerce(config))
        self._init_encoder(BertEmbeddings(self.config),
                           BertPooler(self.config) if add_pooling_layer else None)


class NarrowableTaskMixin:
    """Task-model plumbing shared by the families: narrowing goes to the base model (reached
    through `base_model_prefix`), one forward (base model, then the task's `_logits`), and
    the task loss."""

    supports_gradient_checkpointing = True

    config: PretrainedConfig
    output_cls: type  # SequenceClassifierOutput or TokenClassifierOutput

    def _logits(self, hidden: list[torch.Tensor], pooled: torch.Tensor | None,
                attention_mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                head_mask: torch.Tensor | None = None, neuron_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, **_: Any):
        hidden, pooled = self.base_model(input_ids, attention_mask, token_type_ids, head_mask,
                                         neuron_mask)
        logits = self._logits(hidden, pooled, attention_mask)
        return self.output_cls(loss=self._loss(logits, labels), logits=logits,
                               hidden_states=tuple(hidden) if output_hidden_states else None)

    def sparsify(self, sparsity: float | None) -> None:
        self.base_model.sparsify(sparsity)

    def densify(self) -> None:
        self.base_model.densify()

    def reorder(self, head_importance: Sequence[torch.Tensor],
                neuron_importance: Sequence[torch.Tensor]) -> None:
        self.base_model.reorder(head_importance, neuron_importance)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
        if labels is None:
            return None
        if self.config.num_labels == 1:
            return F.mse_loss(logits.view(-1), labels.view(-1).to(logits.dtype))
        return F.cross_entropy(logits.view(-1, self.config.num_labels), labels.view(-1),
                               ignore_index=-100)


class _SparseTaskModel(NarrowableTaskMixin, BertPreTrainedModel):
    """Encoder + dropout + linear head; narrowing goes to the encoder."""

    config_class = MiniDiscBertConfig
    pooled: bool  # classify the pooled [CLS] vector (True) or every token (False)

    def __init__(self, config: BertConfig):
        super().__init__(MiniDiscBertConfig.coerce(config))
        config = self.config
        self.bert = SparseBertModel(config, add_pooling_layer=self.pooled)
        drop = config.classifier_dropout
        self.dropout = nn.Dropout(config.hidden_dropout_prob if drop is None else drop)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _logits(self, hidden: list[torch.Tensor], pooled: torch.Tensor | None,
                attention_mask: torch.Tensor | None) -> torch.Tensor:
        return self.classifier(self.dropout(pooled if self.pooled else hidden[-1]))


class SparseBertForSequenceClassification(_SparseTaskModel):
    """Sentence(-pair) classification or regression from the pooled [CLS] vector."""

    pooled = True
    output_cls = SequenceClassifierOutput


class SparseBertForTokenClassification(_SparseTaskModel):
    """Per-token tagging (NER)."""

    pooled = False
    output_cls = TokenClassifierOutput


# save_pretrained copies this file and fills config.json's auto_map with these names.
MiniDiscBertConfig.register_for_auto_class()
SparseBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
SparseBertForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")


def encoder_params(hidden: int, head_size: int, heads: Sequence[int],
                   neurons: Sequence[int]) -> int:
    """Encoder parameter count for given per-layer widths (virtual narrowing included)."""
    total = 0
    for h, n in zip(heads, neurons):
        w = h * head_size
        total += 3 * (hidden * w + w) + (w * hidden + hidden) + 2 * hidden  # attention
        total += (hidden * n + n) + (n * hidden + hidden) + 2 * hidden  # FFN
    return total
