"""Tokenise once, batch with dynamic padding (to the longest row of each batch).

Evaluation batches are sorted by length, so little compute goes to padding; predictions are
put back in file order afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import (
    AutoTokenizer,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
)

from minidisc.data.examples import PairExample, TagExample
from minidisc.data.tasks import Task
from minidisc.errors import MiniDiscError, reraise_inner


def load_tokenizer(path: str | Path, use_slow: bool = False,
                   pre_split: bool = False) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer. `pre_split` (tagging: words come one by one): a byte-level
    BPE (RoBERTa's) marks a word start by a leading space, so a word alone would get other
    tokens than inside a sentence; such a tokenizer is loaded with `add_prefix_space=True`."""
    try:
        tok = AutoTokenizer.from_pretrained(str(path), use_fast=not use_slow)
        if pre_split and _first_word_differs(tok):
            tok = AutoTokenizer.from_pretrained(str(path), use_fast=not use_slow,
                                                add_prefix_space=True)
    except Exception as e:  # transformers and tokenizers raise many kinds
        reraise_inner(e)
        raise MiniDiscError(f"{path}: cannot load a tokenizer ({type(e).__name__})") from None
    return tok


def _first_word_differs(tok: PreTrainedTokenizerBase) -> bool:
    """Whether a word opening the text is tokenised unlike the same word after a space."""
    return tok.encode("a", add_special_tokens=False) != tok.encode(" a", add_special_tokens=False)


def _encode_pairs(task: Task, examples: list[PairExample], tok: PreTrainedTokenizerBase,
                  max_length: int) -> list[dict[str, Any]]:
    a = [e.text_a for e in examples]
    b = [e.text_b for e in examples] if examples[0].text_b is not None else None
    enc = tok(a, b, truncation=True, max_length=max_length)
    feats = [{k: enc[k][i] for k in enc.keys()} for i in range(len(examples))]
    if examples[0].label is not None:
        for f, e in zip(feats, examples):
            f["labels"] = float(e.label) if task.is_regression else task.labels.index(e.label)
    return feats


def _encode_tags(task: Task, examples: list[TagExample], tok: PreTrainedTokenizerBase,
                 max_length: int) -> list[dict[str, Any]]:
    """Labels on the first sub-token of each word, -100 elsewhere (ignored by loss and metric).

    Sentences without gold tags get 'O' placeholders so the first sub-tokens stay marked.
    The sentence is framed by the tokenizer's own start and end tokens ([CLS]/[SEP] for BERT,
    <s>/</s> for RoBERTa, only </s> at the end for T5, which has no start token), and has
    token_type_ids only where the tokenizer has them.
    """
    start = [t for t in (tok.cls_token_id if tok.cls_token_id is not None
                         else tok.bos_token_id,) if t is not None]
    end = [t for t in (tok.sep_token_id if tok.sep_token_id is not None
                       else tok.eos_token_id,) if t is not None]
    types = "token_type_ids" in tok.model_input_names
    feats = []
    for e in examples:
        ids, labels = list(start), [-100] * len(start)
        tags = e.tags or ["O"] * len(e.words)
        for word, tag in zip(e.words, tags):
            pieces = tok.encode(word, add_special_tokens=False) or [tok.unk_token_id]
            if len(ids) + len(pieces) > max_length - len(end):
                break  # words past the limit are predicted 'O'
            ids += pieces
            labels += [task.labels.index(tag)] + [-100] * (len(pieces) - 1)
        ids += end
        labels += [-100] * len(end)
        feat = {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}
        if types:
            feat["token_type_ids"] = [0] * len(ids)
        feats.append(feat)
    return feats


@dataclass
class Split:
    """One tokenised split: examples (for metrics and output files) and their features."""

    name: str
    examples: list
    features: list[dict[str, Any]]

    @property
    def has_labels(self) -> bool:
        first = self.examples[0]
        return (first.tags if isinstance(first, TagExample) else first.label) is not None


def encode_split(task: Task, name: str, examples: list, tok: PreTrainedTokenizerBase,
                 max_length: int) -> Split:
    """Examples tokenised as the task's model reads them (a task's files or any others),
    truncated to `max_length` tokens (models.resolve_max_length: the flag or its default,
    within the model's position table)."""
    encode = _encode_tags if task.is_ner else _encode_pairs
    return Split(name, examples, encode(task, examples, tok, max_length))


def load_split(task: Task, data_dir: str | Path, split: str, tok: PreTrainedTokenizerBase,
               max_length: int) -> Split:
    return encode_split(task, split, task.read(data_dir, split), tok, max_length)


class _Features(Dataset):
    def __init__(self, features: list[dict[str, Any]]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.features[i]


class _ByLength(Sampler[int]):
    def __init__(self, features: list[dict[str, Any]]):
        self.order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def collator(task: Task, tok: PreTrainedTokenizerBase):
    if task.is_ner:
        return DataCollatorForTokenClassification(tok, return_tensors="pt")
    return DataCollatorWithPadding(tok, return_tensors="pt")


def train_loader(split: Split, task: Task, tok: PreTrainedTokenizerBase, batch_size: int,
                 seed: int, sampler: Sampler | None = None) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(_Features(split.features), batch_size=batch_size,
                      shuffle=sampler is None, sampler=sampler, generator=generator,
                      collate_fn=collator(task, tok), drop_last=False)


@dataclass
class EvalBatches:
    """Length-sorted batches, padded once and reused by every evaluation (MiniDisc scores
    every candidate at every evaluation: re-collating each time cost as much as a forward of
    the narrowest one). `order[k]` is the file row of the k-th output."""

    batches: list[dict[str, torch.Tensor]]
    order: list[int]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def eval_loader(split: Split, task: Task, tok: PreTrainedTokenizerBase, batch_size: int,
                device: torch.device | str = "cpu") -> EvalBatches:
    sampler = _ByLength(split.features)
    loader = DataLoader(_Features(split.features), batch_size=batch_size, sampler=sampler,
                        collate_fn=collator(task, tok))
    batches = [{k: v.to(device) for k, v in b.items()} for b in loader]
    return EvalBatches(batches, sampler.order)
