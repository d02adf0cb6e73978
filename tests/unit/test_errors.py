"""A signal that lands inside a library call still stops the run as that signal."""

from __future__ import annotations

import signal

import pytest

from minidisc.data.tasks import TASKS
from minidisc.errors import MiniDiscError, exit_code, reraise_inner
from minidisc.models import load_model
from minidisc.models.sparse_bert import SparseBertForSequenceClassification
from minidisc.training.state import Interrupted


def _unwinding(*args, **kwargs):
    """What torch does when SIGTERM's Interrupted is raised inside a mode context: its exit
    fails while unwinding, and the caller sees the RuntimeError (the Interrupted as context)."""
    try:
        raise Interrupted(signal.SIGTERM, resumable=False)
    finally:
        raise RuntimeError("trying to pop from empty mode stack")


def test_reraise_inner_finds_the_user_error_in_the_chain():
    with pytest.raises(Interrupted):
        try:
            _unwinding()
        except RuntimeError as e:
            reraise_inner(e)
    reraise_inner(ValueError("a library's own error"))  # none inside: nothing raised


def test_a_signal_while_loading_a_checkpoint_exits_as_the_signal(tiny_bert, monkeypatch):
    monkeypatch.setattr(SparseBertForSequenceClassification, "from_pretrained",
                        classmethod(_unwinding))
    with pytest.raises(Interrupted) as caught:
        load_model("sparsebert_cls", tiny_bert, TASKS["sst2"], "--teacher_model_path")
    assert caught.value.code == 128 + signal.SIGTERM
    assert exit_code(lambda: load_model("sparsebert_cls", tiny_bert, TASKS["sst2"],
                                        "--teacher_model_path")) == 143
    monkeypatch.setattr(SparseBertForSequenceClassification, "from_pretrained",
                        classmethod(lambda *a, **k: (_ for _ in ()).throw(OSError("disk"))))
    with pytest.raises(MiniDiscError, match="cannot load weights: disk"):
        load_model("sparsebert_cls", tiny_bert, TASKS["sst2"], "--teacher_model_path")
