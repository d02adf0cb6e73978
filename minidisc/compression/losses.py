"""Distillation objectives over model outputs (logits + hidden states), TextBrewer-style:
the loss sees only what the models return, so one objective serves every student kind.

Each objective is one row of the paper's tables and matches the reference's model type of
the same name (`OBJECTIVES`): `sparse` for sparsebert_* (and sparseroberta_*), `kd` for
kdbert_*, `pkd` for pkdbert_* and `ft` (no teacher at all) for ftbert_* (and ftroberta_*).
`sparse_kd` is this project's earlier kdbert objective (hidden MSE plus the averaged soft and
label losses), kept selectable with `--objective sparse_kd`.

Every comparison runs in fp32: a teacher kept in bf16/fp16 (--teacher_dtype) or a student
under autocast gives half-precision outputs, and soft targets or squared differences of those
lose the small differences distillation learns from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minidisc.models.families import parse_model_type


def align_layers(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """Pairs (student, teacher) of hidden-state indices to match, embeddings included.

    Up to six evenly spaced points plus the embeddings, as the reference does for 12 layers
    (0, 2, ..., 12); defined for any depths, e.g. 6->4 gives (0,0) (1,2) (2,3) (3,4) (4,6).
    """
    n = max(1, min(student_layers, teacher_layers, 6))
    return [(round(j * student_layers / n), round(j * teacher_layers / n)) for j in range(n + 1)]


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over the real (mask = 1) tokens only, averaged over tokens and features."""
    m = mask.unsqueeze(-1).float()
    return ((student.float() - teacher.float()).pow(2) * m).sum() / (m.sum() * student.shape[-1])


def hidden_mse(student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...],
               mask: torch.Tensor) -> torch.Tensor:
    """Mean over aligned layers of the MSE over real (non-padding) tokens."""
    pairs = align_layers(len(student) - 1, len(teacher) - 1)
    return torch.stack([masked_mse(student[i], teacher[j], mask) for i, j in pairs]).mean()


def normalized_last_mse(student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...],
                        mask: torch.Tensor) -> torch.Tensor:
    """Patient KD's hidden term: MSE of L2-normalised last-layer states over real tokens."""
    return masked_mse(F.normalize(student[-1], dim=-1), F.normalize(teacher[-1], dim=-1), mask)


def soft_ce(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """T^2 * CE(softmax(teacher/T), student/T); per token for NER (mask = 1 tokens only)."""
    t = temperature
    ce = -(F.softmax(teacher.float() / t, -1) * F.log_softmax(student.float() / t, -1)).sum(-1)
    if mask is not None:
        m = mask.to(ce.dtype)
        ce = (ce * m).sum() / m.sum().clamp_min(1)
    else:
        ce = ce.mean()
    return ce * t * t


def label_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    if regression:
        return F.mse_loss(logits.view(-1), labels.view(-1).to(logits.dtype))
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)


@dataclass(frozen=True)
class LossInputs:
    """What every objective may read: both outputs, the batch and the task's shape."""

    student: object
    teacher: object
    batch: dict[str, torch.Tensor]
    temperature: float
    regression: bool
    token_level: bool

    @property
    def real_tokens(self) -> torch.Tensor:
        return self.batch["attention_mask"]

    def logit_term(self) -> torch.Tensor:
        """Soft CE against the teacher (MSE for regression). NER: over the first sub-token of
        each word only (the tokens that carry a label), never [CLS], [SEP] or continuations."""
        s, t = self.student.logits, self.teacher.logits
        if self.regression:
            return F.mse_loss(s.view(-1).float(), t.view(-1).float())
        mask = (self.batch["labels"] != -100) if self.token_level else None
        return soft_ce(s, t, self.temperature, mask)

    def label_term(self) -> torch.Tensor:
        return label_loss(self.student.logits, self.batch["labels"], self.regression)

    def hidden_term(self) -> torch.Tensor:
        return hidden_mse(self.student.hidden_states, self.teacher.hidden_states,
                          self.real_tokens)


def _sparse(x: LossInputs) -> torch.Tensor:
    return (x.hidden_term() + x.logit_term()) / 2


def _kd(x: LossInputs) -> torch.Tensor:
    return (x.logit_term() + x.label_term()) / 2


def _pkd(x: LossInputs) -> torch.Tensor:
    hidden = normalized_last_mse(x.student.hidden_states, x.teacher.hidden_states,
                                 x.real_tokens)
    return (hidden + x.logit_term() + x.label_term()) / 3


def _ft(x: LossInputs) -> torch.Tensor:
    return x.label_term()


def _sparse_kd(x: LossInputs) -> torch.Tensor:
    return (x.hidden_term() + (x.logit_term() + x.label_term()) / 2) / 2


@dataclass(frozen=True)
class Objective:
    name: str
    fn: Callable[[LossInputs], torch.Tensor]
    needs_teacher: bool = True
    needs_hidden: bool = True


OBJECTIVES: dict[str, Objective] = {
    "sparse": Objective("sparse", _sparse),
    "kd": Objective("kd", _kd, needs_hidden=False),
    "pkd": Objective("pkd", _pkd),
    "ft": Objective("ft", _ft, needs_teacher=False, needs_hidden=False),
    "sparse_kd": Objective("sparse_kd", _sparse_kd),
}  # keyed by registry.OBJECTIVES, the names --objective offers

def objective_for(model_type: str, override: str | None = None) -> Objective:
    """The model type's prefix decides its loss (`sparse` of sparseroberta_cls, models/
    families.py); --objective overrides it."""
    if override is not None:
        return OBJECTIVES[override]
    return OBJECTIVES[parse_model_type(model_type)[1]]


def distill_loss(objective: str, student, teacher, batch: dict[str, torch.Tensor], *,
                 temperature: float, regression: bool, token_level: bool) -> torch.Tensor:
    """The loss of `objective` for one student output against the teacher's."""
    return OBJECTIVES[objective].fn(LossInputs(student, teacher, batch, temperature, regression,
                                               token_level))
