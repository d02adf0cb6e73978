"""Head and neuron importance: accumulated |d loss / d mask| over the dev set."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from minidisc.training.runtime import Runtime, model_inputs


def importance(model: nn.Module, loader: Iterable[dict[str, torch.Tensor]], rt: Runtime,
               ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer, the importance of each head and each FFN neuron, normalised per layer by
    its L2 norm so layers compare fairly when all units are ranked together."""
    heads, neurons = model.base_model.widths()
    if len(set(heads)) > 1 or len(set(neurons)) > 1:
        raise ValueError("importance needs a model with equal layer widths")
    device = rt.device
    head_mask = torch.ones(len(heads), heads[0], device=device, requires_grad=True)
    neuron_mask = torch.ones(len(neurons), neurons[0], device=device, requires_grad=True)
    head_imp = torch.zeros_like(head_mask)
    neuron_imp = torch.zeros_like(neuron_mask)
    model.eval()
    for batch in tqdm(loader, desc="importance", disable=not rt.is_main):
        labels = batch["labels"].to(device)
        with rt.autocast():
            loss = model(**model_inputs(batch, rt), labels=labels, head_mask=head_mask,
                         neuron_mask=neuron_mask).loss
        gh, gn = torch.autograd.grad(loss, [head_mask, neuron_mask])
        head_imp += gh.abs().float()
        neuron_imp += gn.abs().float()

    def normalise(imp: torch.Tensor) -> list[torch.Tensor]:
        norm = imp.norm(dim=1, keepdim=True).clamp_min(1e-20)
        return list((imp / norm).detach().cpu())

    return normalise(head_imp), normalise(neuron_imp)
