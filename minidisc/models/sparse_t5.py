"""A T5 encoder whose attention heads and FFN neurons can be masked, reordered, narrowed and
densified, with the EncT5 classification head (the paper's billion-parameter experiments).

Parameter names are those of transformers' `T5EncoderModel` (`shared`, `encoder.block.N.layer.
{0,1}`, `encoder.final_layer_norm`), so the encoder of any T5, T5 v1.1 or flan-t5 checkpoint
loads into it. The task models keep the encoder under `transformer.` (T5's `base_model_prefix`);
the EncT5 head's one decoder block is named like block 0 of T5's decoder, so a full
`T5ForConditionalGeneration` checkpoint initialises it too.

Widths work as in sparse_bert.py: `sparsify()` keeps the first units of each layer virtually,
`densify()` copies them into smaller tensors, `reorder()` permutes units by importance, and the
per-layer widths live in the config (`layer_heads`, `layer_neurons`).

Relative position bias: T5 computes one bias table in block 0 and every layer reads head j's
column j. Reordering permutes each layer's heads differently, so the table cannot follow them all;
instead each layer records which column each of its heads reads (`relative_bias_heads` in the
config, identity for plain T5), reorder permutes and densify truncates that list, and the table
itself stays whole (`relative_attention_num_buckets` x `num_heads`, a few hundred parameters).

`save_pretrained` copies this file (and sparse_bert.py, which it imports relatively for the
sparsity-map helpers) beside the weights and names the classes in `auto_map` (model type
`minidisc_t5`): Auto classes load the checkpoints with `trust_remote_code=True` without MiniDisc.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import T5Config, T5PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput
from transformers.models.t5.modeling_t5 import T5LayerNorm

from .sparse_bert import (
    MiniDiscConfigMixin,
    NarrowableEncoderMixin,
    NarrowableTaskMixin,
    layer_widths,
    padding_bias,
)

T5_TYPES = ("t5", "mt5")  # plain config.json model types taken as this one


class MiniDiscT5Config(MiniDiscConfigMixin, T5Config):
    """A T5 config of its own model type, so Auto classes pick these models. Besides T5's
    names it answers BERT's (`hidden_size`, `num_attention_heads`, `num_hidden_layers`,
    `intermediate_size`) so generic width code works unchanged. Extra keys: `layer_heads`,
    `layer_neurons`, `relative_bias_heads`, `sparsity`, `sparsity_map`, `task_name`."""

    model_type = "minidisc_t5"
    plain_types = T5_TYPES
    attribute_map = {**T5Config.attribute_map, "intermediate_size": "d_ff"}


def relative_position_bucket(relative: torch.Tensor, num_buckets: int,
                             max_distance: int) -> torch.Tensor:
    """T5's bidirectional buckets: half per direction, exact for small distances, then
    logarithmic up to `max_distance` (everything further shares the last bucket)."""
    half = num_buckets // 2
    bucket = (relative > 0).long() * half
    dist = relative.abs()
    exact = half // 2
    log_ratio = torch.log(dist.clamp_min(1).float() / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (half - exact)).long()).clamp(max=half - 1)
    return bucket + torch.where(dist < exact, dist, far)


class SparseT5Attention(nn.Module):
    """T5 attention (no biases, no score scaling) over the first `heads` heads; block 0's also
    holds the relative position table every encoder layer reads."""

    def __init__(self, config: T5Config, num_heads: int, relative_bias: bool = False,
                 bias_heads: Sequence[int] | None = None):
        super().__init__()
        self.d_kv = config.d_kv
        self.num_heads = num_heads
        inner = num_heads * config.d_kv
        self.q = nn.Linear(config.d_model, inner, bias=False)
        self.k = nn.Linear(config.d_model, inner, bias=False)
        self.v = nn.Linear(config.d_model, inner, bias=False)
        self.o = nn.Linear(inner, config.d_model, bias=False)
        if relative_bias:
            self.relative_attention_bias = nn.Embedding(config.relative_attention_num_buckets,
                                                        config.num_heads)
        # The column of the position table each head reads (see the module docstring).
        self.bias_heads = list(range(num_heads)) if bias_heads is None else list(bias_heads)
        self.dropout_p = config.dropout_rate

    def head_bias(self, bias: torch.Tensor, heads: int) -> torch.Tensor:
        """This layer's first `heads` heads' slice of the all-heads bias (a view when the
        columns are still in table order)."""
        cols = self.bias_heads[:heads]
        if cols == list(range(heads)):
            return bias[:, :heads]
        return bias[:, cols]

    def forward(self, x: torch.Tensor, kv: torch.Tensor, bias: torch.Tensor | None, heads: int,
                head_mask: torch.Tensor | None) -> torch.Tensor | None:
        """Attention output (already through `o`); None when no head is left."""
        if heads == 0:
            return None
        w = heads * self.d_kv

        def proj(lin: nn.Linear, h: torch.Tensor) -> torch.Tensor:
            return F.linear(h, lin.weight[:w]).view(h.shape[0], h.shape[1], heads,
                                                    self.d_kv).transpose(1, 2)

        ctx = F.scaled_dot_product_attention(
            proj(self.q, x), proj(self.k, kv), proj(self.v, kv), attn_mask=bias,
            dropout_p=self.dropout_p if self.training else 0.0, scale=1.0,
        )
        if head_mask is not None:
            ctx = ctx * head_mask[:heads].view(1, heads, 1, 1).to(ctx.dtype)
        ctx = ctx.transpose(1, 2).reshape(x.shape[0], x.shape[1], w)
        return F.linear(ctx, self.o.weight[:, :w])

    def reorder(self, head_order: torch.Tensor) -> None:
        d = self.d_kv
        rows = (head_order.view(-1, 1) * d + torch.arange(d, device=head_order.device)).view(-1)
        with torch.no_grad():
            for lin in (self.q, self.k, self.v):
                lin.weight.copy_(lin.weight[rows])
            self.o.weight.copy_(self.o.weight[:, rows])
        self.bias_heads = [self.bias_heads[i] for i in head_order.tolist()]

    def densify(self, heads: int) -> None:
        w = heads * self.d_kv
        self.q, self.k, self.v = (_slice_linear(lin, rows=w) for lin in (self.q, self.k, self.v))
        self.o = _slice_linear(self.o, cols=w)
        self.num_heads = heads
        self.bias_heads = self.bias_heads[:heads]


class SparseT5DenseFF(nn.Module):
    """T5's FFN over the first `neurons` neurons: `wi` (v1.0, relu) or the gated `wi_0`/`wi_1`
    pair (v1.1, flan-t5), whose rows are kept and permuted together."""

    def __init__(self, config: T5Config, neurons: int):
        super().__init__()
        self.gated = config.is_gated_act
        for name in ("wi_0", "wi_1") if self.gated else ("wi",):
            setattr(self, name, nn.Linear(config.d_model, neurons, bias=False))
        self.wo = nn.Linear(neurons, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.act = ACT2FN[config.dense_act_fn]

    @property
    def inputs(self) -> tuple[nn.Linear, ...]:
        return (self.wi_0, self.wi_1) if self.gated else (self.wi,)

    def forward(self, x: torch.Tensor, neurons: int,
                neuron_mask: torch.Tensor | None) -> torch.Tensor:
        if self.gated:
            h = self.act(F.linear(x, self.wi_0.weight[:neurons])) * \
                F.linear(x, self.wi_1.weight[:neurons])
        else:
            h = self.act(F.linear(x, self.wi.weight[:neurons]))
        if neuron_mask is not None:
            h = h * neuron_mask[:neurons].to(h.dtype)
        h = self.dropout(h).to(self.wo.weight.dtype)  # T5 keeps `wo` in float32 (fp16 overflow)
        return F.linear(h, self.wo.weight[:, :neurons])

    def reorder(self, order: torch.Tensor) -> None:
        with torch.no_grad():
            for lin in self.inputs:
                lin.weight.copy_(lin.weight[order])
            self.wo.weight.copy_(self.wo.weight[:, order])

    def densify(self, neurons: int) -> None:
        for name in ("wi_0", "wi_1") if self.gated else ("wi",):
            setattr(self, name, _slice_linear(getattr(self, name), rows=neurons))
        self.wo = _slice_linear(self.wo, cols=neurons)


def _slice_linear(linear: nn.Linear, rows: int | None = None, cols: int | None = None) -> nn.Linear:
    """A new bias-free Linear holding the first `rows` outputs / first `cols` inputs."""
    w = linear.weight[:rows, :cols]
    new = torch.nn.utils.skip_init(nn.Linear, w.shape[1], w.shape[0], bias=False,
                                   device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
    return new


class SparseT5LayerSelfAttention(nn.Module):
    def __init__(self, config: T5Config, num_heads: int, relative_bias: bool = False,
                 bias_heads: Sequence[int] | None = None):
        super().__init__()
        self.SelfAttention = SparseT5Attention(config, num_heads, relative_bias, bias_heads)
        self.layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)


class SparseT5LayerCrossAttention(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.EncDecAttention = SparseT5Attention(config, config.num_heads)
        self.layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)


class SparseT5LayerFF(nn.Module):
    def __init__(self, config: T5Config, neurons: int):
        super().__init__()
        self.DenseReluDense = SparseT5DenseFF(config, neurons)
        self.layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x: torch.Tensor, neurons: int,
                neuron_mask: torch.Tensor | None) -> torch.Tensor:
        if neurons == 0:  # no neurons, no biases: the residual path alone
            return x
        h = self.DenseReluDense(self.layer_norm(x), neurons, neuron_mask)
        return x + self.dropout(h)


def _residual_attention(layer: nn.Module, att: SparseT5Attention, x: torch.Tensor,
                        kv: torch.Tensor | None, bias: torch.Tensor | None, heads: int,
                        head_mask: torch.Tensor | None) -> torch.Tensor:
    """Pre-norm attention sub-layer: x + dropout(attention(norm(x)))."""
    h = layer.layer_norm(x)
    out = att(h, h if kv is None else kv, bias, heads, head_mask)
    return x if out is None else x + layer.dropout(out)


class SparseT5Block(nn.Module):
    """One encoder block: `layer[0]` self-attention, `layer[1]` FFN (T5's names)."""

    def __init__(self, config: T5Config, num_heads: int, neurons: int, relative_bias: bool,
                 bias_heads: Sequence[int] | None):
        super().__init__()
        self.layer = nn.ModuleList([
            SparseT5LayerSelfAttention(config, num_heads, relative_bias, bias_heads),
            SparseT5LayerFF(config, neurons)])

    @property
    def attention(self) -> SparseT5Attention:
        return self.layer[0].SelfAttention

    @property
    def ffn(self) -> SparseT5DenseFF:
        return self.layer[1].DenseReluDense

    @property
    def num_heads(self) -> int:
        return self.attention.num_heads

    @property
    def num_neurons(self) -> int:
        return self.ffn.wo.in_features

    def forward(self, x: torch.Tensor, bias: torch.Tensor, heads: int, neurons: int,
                head_mask: torch.Tensor | None, neuron_mask: torch.Tensor | None) -> torch.Tensor:
        """`bias`: position bias of every table column plus the padding mask, (B, H, T, T)."""
        att = self.attention
        x = _residual_attention(self.layer[0], att, x, None, att.head_bias(bias, heads), heads,
                                head_mask)
        return self.layer[1](x, neurons, neuron_mask)

    def reorder(self, head_order: torch.Tensor, neuron_order: torch.Tensor) -> None:
        """Permute heads (with their position-bias columns) and neurons: same function."""
        self.attention.reorder(head_order)
        self.ffn.reorder(neuron_order)

    def densify(self, heads: int, neurons: int) -> None:
        self.attention.densify(heads)
        self.ffn.densify(neurons)


class SparseT5Stack(nn.Module):
    """The encoder: blocks, final RMS norm, dropout (T5Stack's names, no own embedding)."""

    def __init__(self, config: T5Config):
        super().__init__()
        heads, neurons = layer_widths(config)
        bias_heads = getattr(config, "relative_bias_heads", None) or [None] * len(heads)
        with warnings.catch_warnings():  # a layer pruned to no heads or neurons: empty weights
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            self.block = nn.ModuleList(
                SparseT5Block(config, h, n, relative_bias=i == 0, bias_heads=b)
                for i, (h, n, b) in enumerate(zip(heads, neurons, bias_heads)))
        self.final_layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)


class EncT5Classifier(nn.Linear):
    """The task head's output layer, a type of its own: transformers initialises a checkpoint's
    missing weights module by module, so `_init_weights` must know it without its parent."""


class SparseT5PreTrainedModel(T5PreTrainedModel):
    """T5's initialisation for this file's modules (T5PreTrainedModel's only knows its own)."""

    config_class = MiniDiscT5Config
    supports_gradient_checkpointing = True
    _no_split_modules = ["SparseT5Block"]
    _can_record_outputs = {}
    # A full T5 checkpoint has more than these models use.
    _keys_to_ignore_on_load_unexpected = [r"^(transformer\.)?decoder\.block\.[1-9]",
                                          r"relative_attention_bias", r"lm_head", r"embed_tokens"]

    def _initialize_weights(self, module: nn.Module, is_custom_code: bool = False) -> None:
        """Every module through `_init_weights`: transformers skips a remote-code module whose
        own (non-recursive) parameters are all loaded, and the attention and FFN modules
        below own none (their Linears do), so a checkpoint without the EncT5 decoder left it
        as uninitialised memory. `init.*` skips each loaded tensor by itself."""
        super()._initialize_weights(module, is_custom_code=False)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        cfg = self.config
        f, d = cfg.initializer_factor, cfg.d_model
        if isinstance(module, T5LayerNorm):
            init.constant_(module.weight, f)
        elif isinstance(module, SparseT5EncoderModel):
            init.normal_(module.shared.weight, mean=0.0, std=f)
        elif isinstance(module, SparseEncT5ForSequenceClassification):
            init.normal_(module.prompt, mean=0.0, std=f)
        elif isinstance(module, EncT5Classifier):
            init.normal_(module.weight, mean=0.0, std=f * d ** -0.5)
            init.zeros_(module.bias)
        elif isinstance(module, SparseT5DenseFF):
            for lin in module.inputs:
                init.normal_(lin.weight, mean=0.0, std=f * d ** -0.5)
            init.normal_(module.wo.weight, mean=0.0, std=f * cfg.d_ff ** -0.5)
        elif isinstance(module, SparseT5Attention):
            init.normal_(module.q.weight, mean=0.0, std=f * (d * cfg.d_kv) ** -0.5)
            init.normal_(module.k.weight, mean=0.0, std=f * d ** -0.5)
            init.normal_(module.v.weight, mean=0.0, std=f * d ** -0.5)
            init.normal_(module.o.weight, mean=0.0, std=f * (cfg.num_heads * cfg.d_kv) ** -0.5)
            if hasattr(module, "relative_attention_bias"):
                init.normal_(module.relative_attention_bias.weight, mean=0.0, std=f * d ** -0.5)


class SparseT5EncoderModel(NarrowableEncoderMixin, SparseT5PreTrainedModel):
    """Shared embedding + narrowable encoder; returns every hidden state (no pooler: T5 has no
    [CLS], the EncT5 head pools). Narrowing is sparse_bert's, over T5's blocks, plus each
    block's position-bias columns (`relative_bias_heads`)."""

    layers_attr = "block"
    per_layer_keys = ("layer_heads", "layer_neurons", "relative_bias_heads")

    def __init__(self, config: T5Config):
        super().__init__(MiniDiscT5Config.coerce(config))
        self.shared = nn.Embedding(self.config.vocab_size, self.config.d_model)
        self.encoder = SparseT5Stack(self.config)
        self._init_narrowing()
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.shared = value

    def encoder_params(self, heads: Sequence[int], neurons: Sequence[int]) -> int:
        """Parameters of the encoder at these per-layer widths."""
        return encoder_params(self.config, heads, neurons)

    def _record_bias_heads(self) -> None:
        self.config.relative_bias_heads = [list(b.attention.bias_heads) for b in self.layers]

    def _record_widths(self) -> None:
        """Physical widths and position-bias columns into the config (save/load them)."""
        super()._record_widths()
        self._record_bias_heads()

    def reorder(self, head_importance: Sequence[torch.Tensor],
                neuron_importance: Sequence[torch.Tensor]) -> None:
        """Sort heads and neurons by importance; the bias columns follow the heads."""
        super().reorder(head_importance, neuron_importance)
        self._record_bias_heads()

    # --- forward -----------------------------------------------------------------------
    def position_bias(self, length: int, device: torch.device) -> torch.Tensor:
        """(1, num_heads, T, T) relative position bias of every column of block 0's table."""
        pos = torch.arange(length, device=device)
        buckets = relative_position_bucket(pos[None, :] - pos[:, None],
                                           self.config.relative_attention_num_buckets,
                                           self.config.relative_attention_max_distance)
        table = self.encoder.block[0].attention.relative_attention_bias
        return table(buckets).permute(2, 0, 1).unsqueeze(0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                head_mask: torch.Tensor | None = None,
                neuron_mask: torch.Tensor | None = None,
                ) -> tuple[list[torch.Tensor], None]:
        """Hidden states: the embeddings, then each block's output, the last one through the
        final norm (transformers' T5 convention); `token_type_ids` are ignored (T5 has none)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        stack = self.encoder
        x = stack.dropout(self.shared(input_ids))
        bias = self.position_bias(input_ids.shape[1], x.device).to(x.dtype) + \
            padding_bias(attention_mask, x.dtype)
        hidden = self.run_layers(x, bias, head_mask, neuron_mask)
        hidden[-1] = stack.dropout(stack.final_layer_norm(hidden[-1]))
        return hidden, None


class EncT5DecoderBlock(nn.Module):
    """Block 0 of T5's decoder: self-attention, cross-attention to the encoder, FFN."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.layer = nn.ModuleList([SparseT5LayerSelfAttention(config, config.num_heads),
                                    SparseT5LayerCrossAttention(config),
                                    SparseT5LayerFF(config, config.d_ff)])

    def forward(self, x: torch.Tensor, enc: torch.Tensor, enc_bias: torch.Tensor) -> torch.Tensor:
        heads = self.layer[0].SelfAttention.num_heads
        x = _residual_attention(self.layer[0], self.layer[0].SelfAttention, x, None, None,
                                heads, None)
        x = _residual_attention(self.layer[1], self.layer[1].EncDecAttention, x, enc, enc_bias,
                                heads, None)
        return self.layer[2](x, self.layer[2].DenseReluDense.wo.in_features, None)


class EncT5Decoder(nn.Module):
    """The EncT5 head's one-block decoder (T5 decoder names: `block.0`, `final_layer_norm`)."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.block = nn.ModuleList([EncT5DecoderBlock(config)])
        self.final_layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, queries: torch.Tensor, enc: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.dropout(queries)
        x = self.block[0](x, enc, padding_bias(attention_mask, x.dtype))
        return self.dropout(self.final_layer_norm(x))


class _SparseEncT5TaskModel(NarrowableTaskMixin, SparseT5PreTrainedModel):
    """Encoder (under `transformer.`) + a task head; narrowing goes to the encoder."""

    pooled: bool  # one output per sequence (True) or per token (False)

    def __init__(self, config: T5Config):
        super().__init__(MiniDiscT5Config.coerce(config))
        self.transformer = SparseT5EncoderModel(self.config)
        self.classifier = EncT5Classifier(self.config.d_model, self.config.num_labels)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.shared

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.shared = value



class SparseEncT5ForSequenceClassification(_SparseEncT5TaskModel):
    """EncT5: a learned prompt vector is the single query of a one-block T5 decoder that
    cross-attends to the encoder; its output is classified (T5 has no [CLS] to pool). The
    decoder stays full width: only the encoder is sparsified."""

    output_cls = SequenceClassifierOutput
    pooled = True  # one output per sequence

    def __init__(self, config: T5Config):
        super().__init__(config)
        self.decoder = EncT5Decoder(self.config)
        self.prompt = nn.Parameter(torch.empty(1, self.config.d_model))
        self.post_init()

    def _logits(self, hidden: list[torch.Tensor], pooled: None,
                attention_mask: torch.Tensor | None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones(hidden[-1].shape[:2], dtype=torch.long,
                                        device=hidden[-1].device)
        queries = self.prompt.unsqueeze(0).expand(hidden[-1].shape[0], -1, -1)
        return self.classifier(self.decoder(queries, hidden[-1], attention_mask)[:, 0])


class SparseEncT5ForTokenClassification(_SparseEncT5TaskModel):
    """Per-token tagging from the encoder's last hidden state (as transformers'
    T5ForTokenClassification): every token is its own query, no decoder needed."""

    output_cls = TokenClassifierOutput
    pooled = False

    def __init__(self, config: T5Config):
        super().__init__(config)
        self.dropout = nn.Dropout(self.config.classifier_dropout)
        self.post_init()

    def _logits(self, hidden: list[torch.Tensor], pooled: None,
                attention_mask: torch.Tensor | None) -> torch.Tensor:
        return self.classifier(self.dropout(hidden[-1]))


# save_pretrained copies this file and fills config.json's auto_map with these names.
MiniDiscT5Config.register_for_auto_class()
SparseEncT5ForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
SparseEncT5ForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")


def encoder_params(config: T5Config, heads: Sequence[int], neurons: Sequence[int]) -> int:
    """Encoder parameter count for given per-layer widths (virtual narrowing included): no
    biases; the position table and the final norm once."""
    d, d_kv = config.d_model, config.d_kv
    inputs = 2 if config.is_gated_act else 1
    total = config.relative_attention_num_buckets * config.num_heads + d
    for h, n in zip(heads, neurons):
        total += 4 * d * h * d_kv + d  # q, k, v, o + layer norm
        total += (inputs + 1) * d * n + d  # wi (wi_0, wi_1), wo + layer norm
    return total

