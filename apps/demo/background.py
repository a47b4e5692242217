"""Running demo commands in child processes, so that steps (and commands) that do not depend on each
other use both cores.

Most demo commands leave one core idle: L-BFGS probes run on one thread, pocketsphinx aligns on one,
Whisper's greedy decoding is dominated by small per-token matmuls. A :class:`~apps.demo.runner.Step`
with ``background=True`` therefore runs in a child ``python -m workbench ...`` per command while the
runner goes on with the steps that do not need it, and :func:`parallel` runs independent commands of
one step side by side. Children are fresh interpreters (not forks: a fork of a process whose OpenMP
pool is running can hang), so every backgrounded action must be a ``workbench`` command line
(:func:`apps.demo.runner.cli`), whose argv the child gets with workspace paths made absolute.

Example
-------
>>> from apps.demo.runner import cli
>>> both = parallel(cli("corpus", "segment", "@a.jsonl", "--seconds", "15", "--out", "@a"),
...                 cli("corpus", "segment", "@b.jsonl", "--seconds", "15", "--out", "@b"))
>>> both.command
'workbench corpus segment a.jsonl --seconds 15 --out a & workbench corpus segment b.jsonl --seconds 15 --out b & wait'
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["child_argv", "run_child", "parallel", "sequence"]


def child_argv(action, ctx) -> list[str]:
    """The child command line of a ``workbench`` action (``python -m workbench ARGV``, paths resolved)."""
    from apps.demo.runner import _resolve

    if getattr(action, "argv", None) is None:
        raise ValueError(f"`{action.command}` is not a workbench command line: it cannot run in a child process")
    return [sys.executable, "-m", "workbench", *(_resolve(ctx, a) for a in action.argv)]


def _niced(argv: list[str], ctx) -> list[str]:
    """``argv`` under ``nice -n N`` when the context asks for it (a background step) and ``nice`` exists."""
    level = getattr(ctx, "nice", 0)
    return ["nice", "-n", str(level), *argv] if level and shutil.which("nice") else argv


#: every child runs beside another busy process (the foreground, a sibling): one thread each. Measured on 2 cores
#: with one other process busy: a neuro fit took 30.4 s with numpy's 2 OpenBLAS threads, 22.3 s with 1 (idle:
#: 15.6 / 17.6 s); an MNE topomap 1.6 s vs 0.04 s (2 threads waiting on a core the other process holds)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _spawn(argv: list[str], ctx, log_file: Path, header: str | None = None) -> subprocess.Popen:
    """Start ``argv`` (niced as ``ctx`` asks, one BLAS/OpenMP thread) writing stdout and stderr to ``log_file``
    (appended, after ``header``); :func:`wait` closes the log."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_file, "a", encoding="utf-8")  # closed by wait() below
    if header:
        out.write(header)
        out.flush()
    proc = subprocess.Popen(_niced(argv, ctx), stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **ONE_THREAD})
    proc._log = out  # type: ignore[attr-defined]
    return proc


def run_child(action, ctx, log_file: Path) -> subprocess.Popen:
    """Start ``action`` in a child process writing stdout and stderr to ``log_file`` (appended)."""
    return _spawn(child_argv(action, ctx), ctx, log_file, f"$ {action.command}\n")


def wait(procs: Sequence[subprocess.Popen], commands: Sequence[str]) -> None:
    """Wait for every child; raise :class:`~apps.demo.runner.StepFailed` naming the first that failed."""
    from apps.demo.runner import StepFailed

    codes = []
    try:
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:  # interrupted while waiting: do not leave children behind
                p.terminate()
                p.wait()
            p._log.close()  # type: ignore[attr-defined]
    for rc, command in zip(codes, commands):
        if rc == 130:
            raise KeyboardInterrupt(f"`{command}` was interrupted")
        if rc:
            raise StepFailed(f"`{command}` exited with status {rc} (its output: the step's log in logs/)")


def parallel(*actions):
    """One action that runs several independent ``workbench`` commands side by side in child processes.

    Recorded as the shell line ``A & B & wait``; fails when any of them fails."""
    from apps.demo.runner import Action, LOGS

    def run(ctx) -> None:
        log_file = ctx.log_file or ctx.root / LOGS / "parallel.log"
        procs = [run_child(a, ctx, log_file) for a in actions]
        wait(procs, [a.command for a in actions])

    return Action(" & ".join(a.command for a in actions) + " & wait", run, children=True)


def sequence(*actions):
    """One action that runs several ``workbench`` commands one after another in ONE child process, so that a
    background step pays the interpreter's imports (seconds of CPU) and each model's load once, not per command.

    Recorded as the shell line ``A && B``; stops at the first command that fails."""
    from apps.demo.runner import LOGS, Action

    def run(ctx) -> None:
        argvs = [child_argv(a, ctx)[3:] for a in actions]  # without "python -m workbench"
        proc = _spawn([sys.executable, "-c", _CHILD, json.dumps(argvs)], ctx,
                      ctx.log_file or ctx.root / LOGS / "sequence.log")  # the child prints each "$ command"
        wait([proc], [command])

    command = " && ".join(a.command for a in actions)
    return Action(command, run, children=True)


#: the child of :func:`sequence` (``-c``, not ``-m``: the package already imported this module)
_CHILD = "import sys; from apps.demo.background import main; sys.exit(main(sys.argv[1:]))"


def main(argv: Sequence[str] | None = None) -> int:
    """``main(['[ARGV, ...]'])``: run ``workbench ARGV`` for each, in this process (the child of :func:`sequence`)."""
    from workbench.cli import main as workbench
    from workbench.models import reusing_loaded

    argvs = json.loads((sys.argv[1:] if argv is None else list(argv))[0])
    with reusing_loaded():
        for a in argvs:
            print(f"$ workbench {shlex.join(a)}", flush=True)
            rc = workbench(a)
            if rc:
                return int(rc)
    return 0
