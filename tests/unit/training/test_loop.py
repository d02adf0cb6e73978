"""The shared training loop on a toy model: accumulation, early stop, best restore, resume."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from minidisc.config import TrainingConfig
from minidisc.training.loop import Evaluation, fit
from minidisc.training.runtime import Runtime
from minidisc.training.state import NumericalError, StopFlag

RT = Runtime(device=torch.device("cpu"))


def config(**kw) -> TrainingConfig:
    base = dict(learning_rate=0.05, weight_decay=0.0, num_train_epochs=3,
                num_patience_epochs=10, num_grad_accum_steps=1, lr_scheduler_type="linear",
                warmup_proportion=0.0, max_grad_norm=10.0, log_interval=2)
    base.update(kw)
    return TrainingConfig(**base)


def data(n=24, batch=4, seed=0):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.2),
                               torch.nn.Linear(8, 1))


def step_fn(m, seen=None):
    def step(batch, backward):
        x, y = batch
        if seen is not None:
            seen.append(x.clone())
        loss = torch.nn.functional.mse_loss(m(x).squeeze(-1), y)
        backward(loss)
        return loss.item()
    return step


def scorer(m, scores=None):
    x = torch.linspace(-1, 1, 12).view(4, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3

    def evaluate(step):
        if scores is not None:
            return Evaluation(scores[step])
        m.eval()
        with torch.no_grad():
            s = -torch.nn.functional.mse_loss(m(x).squeeze(-1), y).item()
        m.train()
        return Evaluation(s)
    return evaluate


def test_accumulation_equals_the_bigger_batch():
    """Two half batches accumulated give the step of the whole batch (no dropout, no shuffle)."""
    results = []
    for batch, accum in ((8, 1), (4, 2)):
        torch.manual_seed(0)
        m = torch.nn.Linear(3, 1)
        x = torch.randn(16, 3, generator=torch.Generator().manual_seed(2))
        loader = DataLoader(TensorDataset(x, x.sum(-1)), batch_size=batch)
        fit(m, loader, step_fn(m), scorer(m), config(num_grad_accum_steps=accum,
                                                     num_train_epochs=2), RT)
        results.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_patience_stops_and_best_is_kept():
    m = model()
    scores = {s: (1.0 if s == 4 else 0.5) for s in range(2, 100, 2)}
    saved = []
    res = fit(m, data(), lambda b, bw: step_fn(m)(b, bw), _with_save(scorer(m, scores), saved),
              config(num_patience_epochs=1), RT)
    # 6 steps per epoch: the best at step 4, patience 6 steps -> stop at step 10
    assert res.best_step == 4 and res.best_score == 1.0
    assert res.stopped_early and res.steps == 10
    assert saved == [2, 4]


def _with_save(evaluate, saved):
    def wrapped(step):
        ev = evaluate(step)
        return Evaluation(ev.score, ev.metrics, lambda: saved.append(step))
    return wrapped


def test_resume_from_any_saved_state_equals_the_uninterrupted_run():
    states = []
    m = model()
    seen_full = []
    torch.manual_seed(5)
    full = fit(m, data(), step_fn(m, seen_full), scorer(m), config(), RT,
               on_state=lambda s: states.append((copy.deepcopy(s), torch.get_rng_state())))
    final = {k: v.clone() for k, v in m.state_dict().items()}
    assert len(states) == full.steps // 2
    for k in (1, len(states) // 2, len(states) - 2):
        saved, rng = states[k]
        m2 = model()
        torch.set_rng_state(rng)
        seen = []
        res = fit(m2, data(), step_fn(m2, seen), scorer(m2), config(), RT, resume=saved)
        for name, v in m2.state_dict().items():
            torch.testing.assert_close(v, final[name], rtol=0, atol=0)
        assert res.history == full.history and res.best_step == full.best_step
        done = saved["fit"]["step"]
        assert all(torch.equal(a, b) for a, b in zip(seen, seen_full[done:]))


def test_stop_flag_saves_state_then_raises():
    m = model()
    flag = StopFlag()
    states = []

    def evaluate(step):
        flag.signum = 15
        return scorer(m)(step)

    from minidisc.training.state import Interrupted

    with pytest.raises(Interrupted) as e:
        fit(m, data(), step_fn(m), evaluate, config(), RT, on_state=states.append, stop=flag)
    assert e.value.code == 143 and "--resume" in str(e.value)
    assert states[-1]["fit"]["step"] == 2


def test_non_finite_loss_and_score_stop_with_code_3():
    m = model()

    def nan_step(batch, backward):
        return math.nan

    with pytest.raises(NumericalError, match="step 1") as e:
        fit(m, data(), nan_step, scorer(m), config(), RT)
    assert e.value.code == 3
    with pytest.raises(NumericalError, match="dev score"):
        fit(m, data(), step_fn(m), lambda s: Evaluation(math.nan), config(), RT)
