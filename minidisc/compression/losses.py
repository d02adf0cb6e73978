"""Distillation objectives over model outputs (logits + hidden states), TextBrewer-style:
the loss sees only what the models return, so one objective serves every student kind."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def align_layers(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """Pairs (student, teacher) of hidden-state indices to match, embeddings included.

    Up to six evenly spaced points plus the embeddings, as the reference does for 12 layers
    (0, 2, ..., 12); defined for any depths, e.g. 6->4 gives (0,0) (1,2) (2,3) (3,4) (4,6).
    """
    n = max(1, min(student_layers, teacher_layers, 6))
    return [(round(j * student_layers / n), round(j * teacher_layers / n)) for j in range(n + 1)]


def hidden_mse(student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...],
               mask: torch.Tensor) -> torch.Tensor:
    """Mean over aligned layers of the MSE over real (non-padding) tokens."""
    pairs = align_layers(len(student) - 1, len(teacher) - 1)
    m = mask.unsqueeze(-1).to(student[0].dtype)
    denom = m.sum() * student[0].shape[-1]
    losses = [((student[i] - teacher[j]).pow(2) * m).sum() / denom for i, j in pairs]
    return torch.stack(losses).mean()


def soft_ce(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """T^2 * CE(softmax(teacher/T), student/T); per token for NER (real tokens only)."""
    t = temperature
    ce = -(F.softmax(teacher / t, -1) * F.log_softmax(student / t, -1)).sum(-1)
    if mask is not None:
        ce = (ce * mask).sum() / mask.sum()
    else:
        ce = ce.mean()
    return ce * t * t


def label_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    if regression:
        return F.mse_loss(logits.view(-1), labels.view(-1).to(logits.dtype))
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)


def distill_loss(student, teacher, batch: dict[str, torch.Tensor], *, temperature: float,
                 regression: bool, token_level: bool, use_labels: bool) -> torch.Tensor:
    """(hidden MSE + logit loss) / 2; the logit loss is soft CE (MSE for regression), averaged
    with the label loss when `use_labels` (the layer-dropped KD variant)."""
    mask = batch["attention_mask"]
    hidden = hidden_mse(student.hidden_states, teacher.hidden_states, mask)
    if regression:
        logits = F.mse_loss(student.logits, teacher.logits)
    else:
        logits = soft_ce(student.logits, teacher.logits, temperature,
                         mask.to(student.logits.dtype) if token_level else None)
    if use_labels:
        logits = (logits + label_loss(student.logits, batch["labels"], regression)) / 2
    return (hidden + logits) / 2
