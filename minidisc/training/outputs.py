"""Run folders and checkpoints that are never half-written and never overwrite earlier runs.

A run writes into a hidden staging folder beside its run folder and renames it into place
when it succeeds; an earlier run folder of the same name is moved aside, not deleted.
Checkpoints inside a run are saved to a temporary folder and swapped in by rename.
One run at a time writes a run name: `<output_dir>/.<run name>.lock` holds the pid of the run
writing it; a second run is refused while that process lives, a dead one's lock is taken over.
Each run folder keeps its own log (`run.log`) and results.json records where the run came from
(versions, git commit, starting models), so a folder explains itself without the console.
"""

from __future__ import annotations

import glob
import logging
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.errors import MiniDiscError
from minidisc.files import atomic_write, recover_writes
from minidisc.registry import RESULTS, resolve_checkpoint  # noqa: F401 -- their old home
from minidisc.training.state import (
    STATE_DIR,
    Interrupted,
    check_config,
    load_state,
    signals_deferred,
)

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

RUN_LOG = "run.log"  # the run's log records, INFO and above, without progress bars
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOCK_SETTLE_S = 2.0  # how long a lock file may stay empty while its creator writes its pid


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:
        return False
    return True


class RunLock:
    """`<output_dir>/.<run name>.lock`, created exclusively (O_CREAT | O_EXCL) and holding the
    pid of the run writing that name. A lock whose process is gone is stale and taken over."""

    def __init__(self, final: Path):
        self.path = final.with_name(f".{final.name}.lock")
        self.held = False

    def _holder(self) -> tuple[str, int | None]:
        """('gone', None) if released meanwhile, ('live', pid) or ('stale', pid or None)."""
        deadline = time.monotonic() + LOCK_SETTLE_S
        while True:
            try:
                text = self.path.read_text(encoding="utf-8", errors="replace").strip()
            except FileNotFoundError:
                return "gone", None
            except OSError:
                text = ""
            if text.isdigit():
                pid = int(text)
                return ("live" if _pid_alive(pid) else "stale"), pid
            if time.monotonic() >= deadline:  # never got a pid: its creator died at once
                return "stale", None
            time.sleep(0.05)

    def acquire(self) -> None:
        where = self.path.parent
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                state, pid = self._holder()
                if state == "live":
                    raise MiniDiscError(
                        f"--output_dir {where}: run {self.path.name[1:-5]} is being written "
                        f"by process {pid} (lock {self.path}); wait for it to end or use "
                        "another --output_dir / --model_suffix") from None
                if state == "stale":
                    logger.warning("taking over the stale lock %s (process %s is gone)",
                                   self.path, pid)
                    try:
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                continue
            except OSError as e:
                raise MiniDiscError(f"--output_dir {where}: cannot write ({e.strerror})") from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(f"{os.getpid()}\n")
            self.held = True
            return
        raise MiniDiscError(f"--output_dir {where}: could not take the lock {self.path} "
                            "(other runs keep taking it)")

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        if not self.held:
            return
        self.held = False
        try:
            if self.path.read_text(encoding="utf-8").strip() == str(os.getpid()):
                os.unlink(self.path)
        except OSError:
            pass


def save_checkpoint(model: nn.Module, tokenizer: PreTrainedTokenizerBase, path: Path,
                    state: dict[str, torch.Tensor] | None = None) -> None:
    """Write a from_pretrained-loadable folder, replacing an older one only once complete;
    `state`: the weights to write when the model's own are sharded (FSDP)."""
    with signals_deferred(), atomic_write(path) as tmp:  # a signal waits for the swap
        model.save_pretrained(tmp, state_dict=state)
        tokenizer.save_pretrained(tmp)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def provenance(started_at: str, models: dict[str, Any]) -> dict[str, Any]:
    """Where a run's numbers came from: when, which code (versions, git commit; `git_dirty`:
    tracked files differ from it) and which starting checkpoints. Git fields are None outside
    a git checkout."""
    import torch
    import transformers

    import minidisc

    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"started_at": started_at, "minidisc": minidisc.__version__,
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "git_commit": commit,
            "git_dirty": None if status is None else bool(status), "models": models}


class RunFolder:
    """Context manager: yields the staging folder, publishes it as `final` on success.

    A run stopped by a signal or a numerical fault keeps its staging folder (its saved state
    and last good checkpoints); `resume=True` adopts the newest such folder of the same run.
    While open, the package's log records also go to the staging folder's `run.log` (appended
    to on --resume), so the log moves into place with the run.
    """

    def __init__(self, final: Path, is_main: bool = True, resume: bool = False,
                 keep_previous: int = 3, config: dict[str, Any] | None = None):
        self.final = final
        self.is_main = is_main
        self.resume = resume
        self.keep_previous = keep_previous
        self.config = config  # a resumed run's must be the saved state's (check_config)
        self.staging = final.with_name(f".{final.name}.staging-{os.getpid()}")
        self.lock = RunLock(final)
        self._made: list[Path] = []  # folders this run created, deepest first
        self._log: logging.FileHandler | None = None
        self._level = logging.NOTSET

    def interrupted(self) -> list[Path]:
        """Staging folders of earlier runs of this name that saved a state, newest first."""
        found = [p for p in self.final.parent.glob(f".{self.final.name}.staging-*")
                 if (p / STATE_DIR).is_dir() and p != self.staging]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def __enter__(self) -> Path:
        """The main process takes the lock and makes (or, resuming, adopts) the staging
        folder; under torchrun every other process is told its path (one folder per run, so
        every rank resumes from the same state) and writes nothing."""
        failed: BaseException | None = None
        if self.is_main:
            try:
                self._enter_main()
            except BaseException as e:  # the other ranks still wait for the path
                failed = e
        shared = _from_main(None if failed else str(self.staging))
        if failed is not None:
            raise failed
        if shared is None:
            raise MiniDiscError("the main process (rank 0) could not start the run (its "
                                "error is above)")
        self.staging = Path(shared)
        return self.staging

    def _enter_main(self) -> None:
        parent = self.final.parent
        self._made = [p for p in (parent, *parent.parents) if not p.exists()]
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MiniDiscError(f"--output_dir {parent}: cannot write ({e.strerror})") from None
        self.lock.acquire()  # before anything is read or written under this run's name
        try:
            self._enter()
            self._open_log()
        except BaseException:
            self._release()
            raise

    def _open_log(self) -> None:
        """Send the package's records to run.log; INFO is recorded even where the console
        shows less (the level is restored when the run ends)."""
        package = logging.getLogger("minidisc")
        self._log = logging.FileHandler(self.staging / RUN_LOG, encoding="utf-8")
        self._log.setLevel(logging.INFO)
        self._log.setFormatter(logging.Formatter(LOG_FORMAT, "%Y-%m-%d %H:%M:%S"))
        self._level = package.level
        if not package.isEnabledFor(logging.INFO):
            package.setLevel(logging.INFO)
        package.addHandler(self._log)

    def _close_log(self, exc: BaseException | None) -> None:
        if self._log is None:
            return
        if getattr(exc, "keeps_state", False):  # the kept folder's log says why it stopped
            self._log.emit(logging.LogRecord("minidisc", logging.ERROR, __file__, 0,
                                             "stopped: %s", (exc,), None))
        package = logging.getLogger("minidisc")
        package.removeHandler(self._log)
        package.setLevel(self._level)
        self._log.close()
        self._log = None

    def _release(self) -> None:
        """Drop the lock; output folders this run created and left empty go too (all the
        levels of a nested --output_dir)."""
        self.lock.release()
        for folder in self._made:
            try:
                folder.rmdir()
            except OSError:
                break

    def _enter(self) -> None:
        if self.resume:
            earlier = self.interrupted()
            if not earlier:
                raise MiniDiscError(f"--resume: no interrupted run of {self.final.name} in "
                                    f"{self.final.parent} (none saved a state yet)")
            if self.config is not None:  # before anything is touched
                saved = load_state(earlier[0]) or {}
                check_config(saved.get("config"), self.config, earlier[0])
            os.replace(earlier[0], self.staging)
            recover_writes(self.staging)  # a checkpoint or state write the kill cut short
            return
        try:
            self.staging.mkdir(parents=True, exist_ok=False)
        except OSError as e:
            raise MiniDiscError(
                f"--output_dir {self.final.parent}: cannot write ({e.strerror})") from None

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.is_main:
            return
        self._close_log(exc)
        try:
            with signals_deferred():  # the staging folder moves into place whole
                self._exit(exc_type, exc)
        except Interrupted as e:  # a signal while a finished run was being published
            raise Interrupted(e.code - 128, False, f"the run had finished: it is complete in "
                              f"{self.final}") from None
        finally:
            self._release()

    def _exit(self, exc_type, exc) -> None:
        if exc_type is not None:
            if getattr(exc, "keeps_state", False):  # say where, on the error's one line
                exc.args = (f"{exc} (state and last good checkpoints: {self.staging})",)
            elif not (self.resume and (self.staging / STATE_DIR).is_dir()):
                shutil.rmtree(self.staging, ignore_errors=True)  # (a resumed run's state stays)
            return
        shutil.rmtree(self.staging / STATE_DIR, ignore_errors=True)  # a finished run needs none
        if self.final.exists():
            stamp = time.strftime("%Y%m%d-%H%M%S")
            backup = self.final.with_name(f"{self.final.name}.prev-{stamp}")
            n = 1
            while backup.exists():  # two runs within a second
                backup, n = self.final.with_name(f"{self.final.name}.prev-{stamp}-{n}"), n + 1
            os.replace(self.final, backup)
            logger.info("an earlier run was kept as %s", backup)
        os.replace(self.staging, self.final)
        self._prune()

    def _prune(self) -> None:
        """Keep the newest --keep_previous earlier runs (their names sort by time), only once
        this run is in place."""
        prefix = f"{self.final.name}.prev-"
        kept = sorted(self.final.parent.glob(f"{glob.escape(prefix)}*"),  # -<n>: same second
                      key=lambda p: (p.name[:len(prefix) + 15], len(p.name), p.name))
        for old in kept[:max(0, len(kept) - self.keep_previous)]:
            shutil.rmtree(old, ignore_errors=True)
            logger.info("removed the earlier run %s (--keep_previous %d)", old,
                        self.keep_previous)


def _from_main(value: str | None) -> str | None:
    """`value` as the main process has it, on every process of a torchrun (a collective)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
