"""Run a grid of run.py runs (methods x seeds) from a SPEC, resumably, locally or on Slurm.

    python -m minidisc.sweep SPEC.yaml [--launcher local|slurm] [--jobs N] [--dry_run]

SPEC (YAML or JSON) keys:
    output_dir: where every run folder goes
    flags:      run.py flags shared by every run (`name: value`, no leading --; `true` is a
                bare switch, `false`/`null` leaves the flag out)
    teacher:    a finetuned teacher's folder, or `{flags: {...}}`: one --mode finetune run
    sparsify:   `{flags: {...}}` (the default: `{}`) or `false`: one --mode sparsify run of the
                teacher, the students' teacher
    methods:    name -> {mode: finetune|distill|maxidisc|minidisc, flags: {...}}; a flag given
                a list runs once per value (e.g. MaxiDisc paths)
    seeds:      the --seed of every method's runs

Run folders are run.py's own names (`run_name`), with `--model_suffix NAME-sSEED`. A run whose
results.json exists is skipped, an interrupted one (a saved state) continues with --resume,
and one another process is writing (its run-folder lock) is left alone. Methods wait for the
sparsify run, which waits for the teacher.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minidisc.commands import ArgumentParser, configure_logging
from minidisc.errors import MiniDiscError, exit_code
from minidisc.files import read_mapping

logger = logging.getLogger("minidisc.sweep")

STUDENT_MODES = ("finetune", "distill", "maxidisc", "minidisc")
SWEEP_FLAGS = ("mode", "seed", "model_suffix", "output_dir", "resume")  # the sweep sets these
NAMED_FLAGS = ("layer_or_sparsity", "layer_or_sparsity_path", "lam", "target_sparsity")
SPEC_KEYS = ("output_dir", "flags", "teacher", "sparsify", "methods", "seeds")


@dataclass
class Run:
    """One run.py call: its flags, its folder, the runs it needs first."""

    key: str  # where it comes from in the SPEC: teacher, sparsify, methods.NAME[.sSEED]
    argv: list[str]
    folder: Path
    needs: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.folder.name


def _err(spec: Path, key: str, what: str) -> MiniDiscError:
    return MiniDiscError(f"{spec}: {key}: {what}")


def read_spec(path: Path) -> dict[str, Any]:
    """A SPEC file's mapping (YAML, of which JSON is a subset)."""
    data = read_mapping(path)
    if not isinstance(data, dict):
        raise MiniDiscError(f"{path}: a SPEC is a mapping of {', '.join(SPEC_KEYS)}")
    return data


def _flags(spec: Path, key: str, value: Any, seeded: bool = True) -> dict[str, Any]:
    """A flags mapping; `seeded`: the sweep gives these runs their --seed."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err(spec, key, "must be a mapping of run.py flags (name: value)")
    for name, v in value.items():
        if not isinstance(name, str) or name.startswith("-"):
            raise _err(spec, f"{key}.{name}", "write flag names without the leading --")
        if name in SWEEP_FLAGS and (seeded or name != "seed"):
            raise _err(spec, f"{key}.{name}", "set by the sweep (per run); leave it out")
        if isinstance(v, dict):
            raise _err(spec, f"{key}.{name}", "a flag's value is a scalar or a list")
    return value


def to_argv(flags: dict[str, Any]) -> list[str]:
    """run.py flags from a mapping: `true` a bare switch, `false`/`null` left out."""
    out: list[str] = []
    for name, v in flags.items():
        if v is True:
            out.append(f"--{name}")
        elif v is not None and v is not False:
            out += [f"--{name}", f"{v:g}" if isinstance(v, float) else str(v)]
    return out


def _grid(flags: dict[str, Any]) -> list[tuple[dict[str, Any], str, str]]:
    """A method's flags with list values expanded; each with the tag its suffix needs (the
    values of listed flags that run_name does not already spell) and its values for logs."""
    axes = [k for k, v in flags.items() if isinstance(v, list)]
    out = []
    for values in itertools.product(*(flags[k] for k in axes)):
        one = {**flags, **dict(zip(axes, values))}
        tag = "".join(f"-{k}{v:g}" if isinstance(v, float) else f"-{k}{v}"
                      for k, v in zip(axes, values) if k not in NAMED_FLAGS)
        where = ",".join(f"{k}={v}" for k, v in zip(axes, values))
        out.append((one, tag, f"[{where}]" if where else ""))
    return out


def expand(spec: Path, data: dict[str, Any]) -> list[Run]:
    """Every run of the SPEC in the order they can start: teacher, sparsify, then seed by seed
    (every method of a seed before the next seed). Each run's flags go through run.py's own
    parser, so a bad flag is reported with the SPEC key it came from."""
    from minidisc.cli import parse_args

    unknown = [k for k in data if k not in SPEC_KEYS]
    if unknown:
        raise _err(spec, str(unknown[0]), f"unknown key; a SPEC has {', '.join(SPEC_KEYS)}")
    if not isinstance(data.get("output_dir"), str) or not data["output_dir"]:
        raise _err(spec, "output_dir", "missing: the folder every run folder goes into")
    out = Path(data["output_dir"]).expanduser().absolute()  # relative: to the cwd, as run.py
    shared = _flags(spec, "flags", data.get("flags"))
    seeds = data.get("seeds")
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise _err(spec, "seeds", "must be a non-empty list of integers")
    if len(set(seeds)) != len(seeds):
        raise _err(spec, "seeds", "lists a seed twice")
    methods = data.get("methods")
    if not isinstance(methods, dict) or not methods:
        raise _err(spec, "methods", "must map method names to {mode, flags}")

    runs: list[Run] = []

    def add(key: str, mode: str, flags: dict[str, Any], suffix: str, needs: list[Run],
            teacher: Path | None) -> Run:
        argv = ["--mode", mode, *to_argv({**shared, **flags}), "--output_dir", str(out)]
        argv += ["--model_suffix", suffix] * bool(suffix)
        argv += ["--teacher_model_path", str(teacher)] * (teacher is not None)
        try:
            cfg = parse_args(argv)
        except MiniDiscError as e:
            raise _err(spec, key, str(e)) from None
        except SystemExit:  # argparse's own message went to stderr already
            raise _err(spec, key, "run.py refused these flags (see above)") from None
        runs.append(Run(key, argv, cfg.run_folder(), [r.key for r in needs]))
        return runs[-1]

    teacher = data.get("teacher")
    chain: list[Run] = []
    if isinstance(teacher, str):
        teacher_path: Path | None = Path(teacher).expanduser()
    elif isinstance(teacher, dict):
        bad = [k for k in teacher if k != "flags"]
        if bad:
            raise _err(spec, f"teacher.{bad[0]}", "unknown key; the teacher has only flags")
        tflags = _flags(spec, "teacher.flags", teacher.get("flags"), seeded=False)
        start = tflags.pop("teacher_model_path", None)
        chain.append(add("teacher", "finetune", tflags, "", [],
                         Path(start) if start else None))
        teacher_path = chain[-1].folder
    elif teacher is None:
        teacher_path = None  # run.py's default model (only finetune methods use it as is)
    else:
        raise _err(spec, "teacher", "a checkpoint folder or {flags: {...}}")
    sparsify = data.get("sparsify", {})
    if sparsify is not False and teacher is None:
        raise _err(spec, "teacher", "missing: sparsify needs a teacher (a checkpoint folder or "
                   "{flags: {...}}; or write sparsify: false)")
    if sparsify is not False:
        if not isinstance(sparsify, dict) or any(k != "flags" for k in sparsify):
            raise _err(spec, "sparsify", "false, or {flags: {...}}")
        chain.append(add("sparsify", "sparsify", _flags(spec, "sparsify.flags",
                                                        sparsify.get("flags"), seeded=False),
                         "", chain[-1:], teacher_path))
        teacher_path = chain[-1].folder
    for seed in seeds:
        for name, method in methods.items():
            key = f"methods.{name}"
            if not isinstance(method, dict) or any(k not in ("mode", "flags") for k in method):
                raise _err(spec, key, "must be {mode: ..., flags: {...}}")
            if method.get("mode") not in STUDENT_MODES:
                raise _err(spec, f"{key}.mode", f"one of {', '.join(STUDENT_MODES)}")
            if not str(name).replace("_", "").replace("-", "").isalnum():
                raise _err(spec, key, "a method name is letters, digits, - and _")
            mode = method["mode"]
            flags = _flags(spec, f"{key}.flags", method.get("flags"))
            for one, tag, where in _grid(flags):
                one = {"seed": seed, **one}
                start = teacher_path if mode != "finetune" else one.pop(
                    "teacher_model_path", None)
                add(f"{key}{where}.s{seed}", mode, one, f"{name}{tag}-s{seed}",
                    chain[-1:] if mode != "finetune" else [], start)
    seen: dict[Path, str] = {}
    for r in runs:
        if r.folder in seen:
            raise _err(spec, r.key, f"same run folder {r.name} as {seen[r.folder]}")
        seen[r.folder] = r.key
    return runs


# --- the state of a run, from its folder ---------------------------------------------------


def _lock_holder(folder: Path) -> int | None:
    """The live process writing this run (its run-folder lock), if any."""
    from minidisc.training.outputs import RunLock

    try:
        text = RunLock(folder).path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return int(text)
    return int(text)


def state(run: Run) -> str:
    """done (results.json), busy (another process holds its lock), interrupted (a saved
    state to --resume) or new."""
    from minidisc.training.outputs import RESULTS, RunFolder

    if (run.folder / RESULTS).is_file():
        return "done"
    if _lock_holder(run.folder) is not None:
        return "busy"
    return "interrupted" if RunFolder(run.folder).interrupted() else "new"


# --- launchers -----------------------------------------------------------------------------


def run_job(argv: list[str], threads: int | None = None) -> int:
    """One run in this process through run.py's main (what a local worker or a Slurm job
    executes); SIGTERM is run.py's: the run keeps a resumable state."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    from minidisc.main import main

    return main(argv)


class LocalLauncher:
    """`jobs` worker processes, each with its share of the CPU threads; a fresh process per
    run, so one run's memory and threads never leak into the next."""

    def __init__(self, jobs: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
        fresh = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
        self.pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), **fresh)
        self.slots = jobs

    def submit(self, run: Run, argv: list[str]):
        return self.pool.submit(run_job, argv, self.threads)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class SlurmLauncher:
    """One submitit job per run (cluster "slurm"; "local"/"debug" run on this machine through
    submitit's own executors, as the tests do)."""

    def __init__(self, folder: Path, cluster: str, partition: str | None, time_min: int,
                 gpus: int, cpus: int, jobs: int):
        try:
            import submitit
        except ImportError:
            raise MiniDiscError("--launcher slurm needs submitit: pip install submitit "
                                "(the `slurm` extra)") from None
        self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        params: dict[str, Any] = {"timeout_min": time_min, "cpus_per_task": cpus,
                                  "name": "minidisc"}
        if gpus:
            params["gpus_per_node"] = gpus
        if partition:
            params["slurm_partition"] = partition
        self.executor.update_parameters(**params)
        self.cpus, self.slots = cpus, jobs

    def submit(self, run: Run, argv: list[str]):
        self.executor.update_parameters(name=run.name)
        return self.executor.submit(run_job, argv, self.cpus)

    def close(self) -> None:
        pass


# --- the scheduler -------------------------------------------------------------------------


SIGNAL_EXITS = (130, 143)  # run.py stopped by SIGINT / SIGTERM, with a state to --resume


def sweep(runs: list[Run], launcher: Any, poll_s: float = 2.0,
          on_state: Callable[[Run, str], None] | None = None) -> dict[str, str]:
    """Run every run not done, each once its needs are done, at most `launcher.slots` at a
    time. Returns key-and-folder -> final state (done, failed, busy, blocked, interrupted);
    after a run stopped by a signal nothing new starts (the runs not started are absent)."""
    from tqdm.auto import tqdm

    final: dict[str, str] = {}
    by_key: dict[str, list[Run]] = {}
    for r in runs:
        by_key.setdefault(r.key, []).append(r)

    def report(run: Run, what: str) -> None:
        logger.info("%s (%s): %s", run.name, run.key, what)
        if on_state is not None:
            on_state(run, what)

    pending: list[Run] = []
    for r in runs:
        s = state(r)
        if s == "done":
            final[r.name] = "done"
            report(r, "done, skipped")
        else:
            pending.append(r)
    bar = tqdm(total=len(runs), initial=len(runs) - len(pending), desc="sweep", unit="run",
               dynamic_ncols=True)
    running: dict[str, tuple[Run, Any]] = {}
    stopping = False  # a run was stopped by a signal: start nothing more
    try:
        while (pending and not stopping) or running:
            for r in [] if stopping else list(pending):
                if len(running) >= launcher.slots:
                    break
                needs = [final.get(d.name) for k in r.needs for d in by_key[k]]
                if any(n is None for n in needs):
                    continue  # still to run
                pending.remove(r)
                if any(n != "done" for n in needs):
                    final[r.name] = "blocked"
                    report(r, f"blocked: needs {', '.join(r.needs)}, which did not finish")
                    bar.update()
                    continue
                s = state(r)
                if s in ("done", "busy"):
                    final[r.name] = s
                    report(r, "done, skipped" if s == "done" else
                           f"busy: process {_lock_holder(r.folder)} is writing it; left alone")
                    bar.update()
                    continue
                argv = r.argv + ["--resume"] * (s == "interrupted")
                report(r, "resuming" if s == "interrupted" else "starting")
                running[r.name] = (r, launcher.submit(r, argv))
            for name, (r, job) in list(running.items()):
                if not job.done():
                    continue
                del running[name]
                try:
                    rc = job.result()
                except Exception as e:  # noqa: BLE001 -- a worker or job died: report it
                    rc, why = 1, f"{type(e).__name__}: {e}"
                else:
                    why = f"exit status {rc}"
                if rc == 0 and state(r) == "done":
                    final[name] = "done"
                    report(r, "finished")
                elif rc in SIGNAL_EXITS:
                    # SIGINT/SIGTERM (a preemption, a kill): the run saved its state; the
                    # machine is going away or someone asked to stop, so do not start more
                    final[name] = "interrupted"
                    stopping = True
                    report(r, f"interrupted by a signal ({why}): no further run starts; "
                           "rerun the same command to resume")
                else:
                    final[name] = "failed"
                    report(r, f"failed ({why}); its log: {r.folder.parent}/.{r.name}.staging-*"
                           " or the output above")
                bar.update()
            if running:
                time.sleep(poll_s)
    finally:
        bar.close()
    return final


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="python -m minidisc.sweep",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("spec", type=Path, help="the SPEC file (YAML or JSON)")
    ap.add_argument("--launcher", choices=("local", "slurm"), default="local")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs at a time (local: worker processes sharing the CPU threads)")
    ap.add_argument("--dry_run", action="store_true", help="list the runs and their states")
    g = ap.add_argument_group("slurm (through submitit)")
    g.add_argument("--partition", default=None)
    g.add_argument("--time", type=int, default=24 * 60, help="minutes per job")
    g.add_argument("--gpus_per_job", type=int, default=1)
    g.add_argument("--cpus_per_job", type=int, default=8)
    g.add_argument("--cluster", choices=("slurm", "local", "debug"), default="slurm",
                   help="submitit's executor: slurm, or local/debug on this machine")
    g.add_argument("--poll_s", type=float, default=5.0, help="seconds between job checks")
    return ap


def run_sweep(argv: Sequence[str] | None = None) -> dict[str, str]:
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        raise MiniDiscError(f"--jobs {args.jobs}: must be at least 1")
    runs = expand(args.spec, read_spec(args.spec))
    if args.dry_run:
        for r in runs:
            print(f"{state(r):12s} {r.key:28s} {r.folder}")
        return {}
    if args.launcher == "local":
        launcher: Any = LocalLauncher(args.jobs)
    else:
        launcher = SlurmLauncher(runs[0].folder.parent / ".submitit", args.cluster,
                                 args.partition, args.time, args.gpus_per_job,
                                 args.cpus_per_job, args.jobs)
    try:
        final = sweep(runs, launcher, poll_s=args.poll_s if args.launcher == "slurm" else 0.5)
    except KeyboardInterrupt:  # Ctrl-C: the running runs saved their state and stopped
        raise SweepIncomplete("interrupted: rerun the same command to resume") from None
    finally:
        launcher.close()
    counts = {s: sum(v == s for v in final.values()) for s in dict.fromkeys(final.values())}
    logger.info("sweep: %s", ", ".join(f"{n} {s}" for s, n in counts.items()))
    if len(final) < len(runs) or any(v != "done" for v in final.values()):
        raise SweepIncomplete(f"not every run finished: {json.dumps(counts)} (rerun the same "
                              "command to retry and resume)")
    return final


class SweepIncomplete(MiniDiscError):
    """Some runs failed, were blocked or busy: exit 1 (the SPEC was fine)."""

    code = 1


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    return exit_code(lambda: run_sweep(argv))


if __name__ == "__main__":
    sys.exit(main())
