"""The demo's step runner: run steps in order, skip the complete ones, record what made each part.

A :class:`Step` has a name, the steps it builds on, the ``workbench`` command lines it runs (argv
lists, run in this process through :func:`workbench.cli.main`) or Python actions for the few parts no
CLI makes, and a completeness check on its outputs. :func:`run_steps` walks the steps:

- a step whose check passes and whose recorded commands equal today's is skipped (so a killed demo
  resumes at the step it was in; the underlying commands resume inside a step: caches, probes and
  SAE checkpoints continue, files are written atomically);
- a step whose recorded commands differ (``--quick`` after a full run, other settings) or that is
  forced (``--force NAME``) has its outputs removed and is redone, and so is every later step that
  builds on it;
- after each step ``WORKSPACE/workspace.json`` gets, atomically, the equivalent shell commands, the
  seconds it took and the parts it made (``kind``/``name``/``path``), which is what the app reads to
  list the workspace. What the commands print goes to ``WORKSPACE/logs/STEP.log``; their
  progress bars (stderr) stay on the terminal.

Example
-------
>>> import tempfile
>>> from pathlib import Path
>>> ws = Path(tempfile.mkdtemp())
>>> def make_notes(ctx):
...     (ctx.root / "notes").mkdir(exist_ok=True)
...     (ctx.root / "notes" / "a.txt").write_text("hello")
>>> step = Step("notes", "write a note", actions=[Action("echo hello > notes/a.txt", make_notes)],
...             outputs=["notes/a.txt"], parts=[Part("notes", "a", "notes/a.txt")])
>>> [r.status for r in run_steps([step], ws, log=lambda msg: None)]
['done']
>>> [r.status for r in run_steps([step], ws, log=lambda msg: None)]     # complete: skipped
['skipped']
>>> read_workspace(ws)["steps"]["notes"]["commands"]
['echo hello > notes/a.txt']
"""
from __future__ import annotations

import contextlib
import datetime
import shlex
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from workbench.atomic import read_json, write_json

__all__ = ["Action", "Part", "Step", "StepResult", "Context", "run_steps", "read_workspace", "WORKSPACE_JSON",
           "StepFailed"]

WORKSPACE_JSON = "workspace.json"
LOGS = "logs"  # what each step's commands printed: logs/STEP.log
FORMAT = "workbench.workspace/1"


class StepFailed(RuntimeError):
    """A step's command returned non-zero or its outputs were incomplete afterwards."""


@dataclass
class Context:
    """What a step's actions and checks see: the workspace root and the demo's settings."""

    root: Path
    settings: dict = field(default_factory=dict)
    log_file: Path | None = None  # the running step's logs/STEP.log (child processes write there)
    #: a background step's children run at this lowest priority: they take the cycles the foreground leaves
    #: idle instead of time-slicing its two torch threads (measured: the foreground then ran up to 2x slower)
    nice: int = 0

    def path(self, rel: str) -> Path:
        return self.root / rel


@dataclass
class Action:
    """One unit of work: ``command`` is the shell line recorded; ``run(ctx)`` does it in this process."""

    command: str
    run: Callable[[Context], object]
    #: for ``workbench`` command lines (:func:`cli`): the argv, so the action can also run in a child process
    argv: tuple[str, ...] | None = None
    #: runs its work in child processes itself (:func:`apps.demo.background.parallel`): safe in a background thread
    children: bool = False


def cli(*argv: str) -> Action:
    """An action that runs ``workbench ARGV...`` in this process.

    Arguments starting with ``@`` are paths inside the workspace (``@corpora/demo``): they are made
    absolute when run and recorded without the ``@``, so the recorded line is what a user would
    type in the workspace folder.
    """
    def run(ctx: Context) -> None:
        from workbench.cli import main

        try:
            rc = main([_resolve(ctx, a) for a in argv])
        except SystemExit as e:  # argparse rejected the arguments (it already printed why)
            rc = e.code if isinstance(e.code, int) else 2
        if rc:
            raise StepFailed(f"`{command}` exited with status {rc}")

    command = "workbench " + shlex.join([a[1:] if a.startswith("@") else a for a in argv])
    return Action(command, run, argv=tuple(argv))


def _resolve(ctx: Context, arg: str) -> str:
    return str(ctx.root / arg[1:]) if arg.startswith("@") else arg


@dataclass
class Part:
    """A part of the workspace a step makes, listed in workspace.json under ``parts["KIND/NAME"]``.

    ``kind`` is the layout's folder (corpora, caches, saes, probes, steering, neuro); e.g.
    ``Part("caches", "whisper-tiny.en", "caches/whisper-tiny.en")``.
    """

    kind: str
    name: str
    path: str
    info: dict = field(default_factory=dict)
    command: str | None = None  # the command(s) that made it; default: all of its step's commands


@dataclass
class Step:
    """A named step: its actions, the outputs that say it is complete, the parts it makes.

    ``outputs`` are workspace-relative paths that must all exist afterwards; ``check(ctx)`` may
    add a stricter test (e.g. the cache opens). ``removes`` are the paths deleted before a redo
    (default: ``outputs``' top folders). ``needs`` names earlier steps this one builds on.
    ``available()`` returns None when the step can run, or the reason it cannot (a missing
    optional package or sub-command): the step is then reported "not available" and skipped.
    """

    name: str
    description: str
    actions: Sequence[Action] = ()
    outputs: Sequence[str] = ()
    parts: Sequence[Part] = ()
    needs: Sequence[str] = ()
    check: Callable[[Context], bool] | None = None
    removes: Sequence[str] | None = None
    available: Callable[[], str | None] | None = None
    blocking: bool = False  # the app: runs until stopped, never recorded as complete
    #: run in child processes while the runner goes on with the steps that do not need this one
    #: (:mod:`apps.demo.background`; every action must be a :func:`cli` command line)
    background: bool = False

    def commands(self) -> list[str]:
        return [a.command for a in self.actions]

    def complete(self, ctx: Context) -> bool:
        if not self.outputs or not all(ctx.path(p).exists() for p in self.outputs):
            return False
        try:
            return self.check(ctx) if self.check else True
        except Exception:  # a half-written output that does not load: not complete
            return False


@dataclass
class StepResult:
    name: str
    status: str  # done | skipped | unavailable | stopped (the app)
    # (in workspace.json a step is also "running", "interrupted", "failed" or "stale": redone next time)
    seconds: float = 0.0
    message: str = ""


@contextlib.contextmanager
def _stdout_to(path: Path, command: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"$ {command}\n")
        f.flush()
        with contextlib.redirect_stdout(f):
            yield


def read_workspace(root: str | Path) -> dict:
    """``root/workspace.json`` (an empty record when there is none yet)."""
    path = Path(root) / WORKSPACE_JSON
    if path.is_file():
        return read_json(path)
    return {"format": FORMAT, "steps": {}, "parts": {}}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


_RECORD_LOCK = threading.Lock()  # background steps record from their own thread


def _record(root: Path, step: Step, status: str, seconds: float, settings: dict, message: str = "",
            timings: list[float] | None = None) -> None:
    with _RECORD_LOCK:
        _record_locked(root, step, status, seconds, settings, message, timings)


def _record_locked(root: Path, step: Step, status: str, seconds: float, settings: dict, message: str,
                   timings: list[float] | None) -> None:
    ws = read_workspace(root)
    ws["format"] = FORMAT
    ws["settings"] = settings
    ws["commands_run_in"] = "this folder: the paths in the commands are relative to the workspace"
    ws["updated"] = _now()
    ws["steps"][step.name] = {"status": status, "description": step.description, "commands": step.commands(),
                              "seconds": round(seconds, 1), "finished": _now(), **({"message": message} if message else {}),
                              **({"command_seconds": timings} if timings is not None else {})}
    parts = {k: v for k, v in (ws.get("parts") or {}).items() if v.get("step") != step.name}
    if status == "done":
        for p in step.parts:
            parts[f"{p.kind}/{p.name}"] = {"path": p.path, "step": step.name,
                                           "command": p.command or "; ".join(step.commands()), **p.info}
    ws["parts"] = parts
    write_json(root / WORKSPACE_JSON, ws, indent=2)


def _dependents(steps: Sequence[Step], name: str) -> list[str]:
    """Names of the steps that build on ``name``, directly or through others."""
    found: list[str] = []
    for s in steps:
        if name in s.needs or any(n in found for n in s.needs):
            found.append(s.name)
    return found


def _mark_stale(root: Path, names: Iterable[str]) -> None:
    with _RECORD_LOCK:
        _mark_stale_locked(root, names)


def _mark_stale_locked(root: Path, names: Iterable[str]) -> None:
    ws = read_workspace(root)
    names = [n for n in names if n in ws["steps"] and ws["steps"][n].get("status") != "unavailable"]
    if names:
        for n in names:
            ws["steps"][n]["status"] = "stale"
        ws["parts"] = {k: v for k, v in (ws.get("parts") or {}).items() if v.get("step") not in names}
        write_json(root / WORKSPACE_JSON, ws, indent=2)


def _remove_outputs(ctx: Context, step: Step) -> None:
    targets = step.removes if step.removes is not None else sorted({p.split("/")[0] + "/" + p.split("/")[1]
                                                                    if "/" in p else p for p in step.outputs})
    for rel in targets:
        path = ctx.path(rel).resolve()
        if not path.is_relative_to(ctx.root.resolve()) or path == ctx.root.resolve():
            raise ValueError(f"step {step.name}: refusing to remove {path}, outside the workspace")
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run_steps(steps: Sequence[Step], root: str | Path, settings: dict | None = None, force: Iterable[str] = (),
              only: Iterable[str] | None = None, log: Callable[[str], None] = print) -> list[StepResult]:
    """Run ``steps`` in order into workspace ``root``; returns one :class:`StepResult` per step.

    ``force``: step names to redo (with every later step that needs them). ``only``: run just
    these steps (the others are left as they are). A failing step raises :class:`StepFailed`
    after recording it as failed; the steps before it stay complete.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ctx = Context(root, dict(settings or {}))
    names = [s.name for s in steps]
    for name in list(force) + list(only or []):
        if name not in names:
            raise ValueError(f"unknown step {name!r}; the steps are: {', '.join(names)}")
    redo = set(force)
    recorded = read_workspace(root)["steps"]
    results: list[StepResult] = []
    wanted = set(only) if only is not None else None
    pending: dict[str, _Background] = {}
    for i, step in enumerate(steps, 1):
        head = f"[{i}/{len(steps)}] {step.name}"
        if wanted is not None and step.name not in wanted:
            continue
        reason = step.available() if step.available else None
        if reason:
            log(f"{head}: not available: {reason}")
            _record(root, step, "unavailable", 0.0, ctx.settings, reason)
            results.append(StepResult(step.name, "unavailable", message=reason))
            continue
        prev = recorded.get(step.name, {})
        # A record with other commands (a --quick run before a full one, a killed run with other settings)
        # means the outputs on disk were made differently: start that step, and what builds on it, afresh.
        changed = prev.get("status") not in (None, "unavailable") and prev.get("commands") != step.commands()
        stale = prev.get("status") == "stale"
        if any(n in redo for n in step.needs) or changed or stale:
            redo.add(step.name)
        if step.name in redo:
            why = ("forced" if step.name in force else "its commands changed since the last run" if changed
                   else "a step it builds on was redone")
            log(f"{head}: redoing ({why}): removing its outputs")
            _remove_outputs(ctx, step)
            # what builds on this step is out of date from now on, even if this run stops before reaching it
            _mark_stale(root, _dependents(steps, step.name))
        elif not step.blocking and prev.get("status") == "done" and step.complete(ctx):
            log(f"{head}: complete, skipped (took {prev.get('seconds', 0):.0f} s when it ran)")
            _record(root, step, "done", prev.get("seconds", 0.0), ctx.settings, timings=prev.get("command_seconds"))
            results.append(StepResult(step.name, "skipped"))
            continue
        try:
            for name in step.needs:  # a background step this one builds on must have finished
                _join(pending, name, results)
            if step.background:
                log(f"{head}: {step.description} (in the background, beside the next steps)")
                pending[step.name] = _Background(step, head, ctx, log)
                continue
            log(f"{head}: {step.description}")
            results.append(_run_one(step, head, ctx, log))
        except BaseException:
            for bg in pending.values():  # let running children finish (Ctrl-C reaches them too) and record
                bg.thread.join()
            raise
        if results[-1].status == "stopped":
            break
    for name in list(pending):
        _join(pending, name, results)
    return results


def _run_one(step: Step, head: str, ctx: Context, log: Callable[[str], None], child: bool = False) -> StepResult:
    """Run one step's actions (``child``: each in a child process) and record the outcome."""
    root = ctx.root
    _record(root, step, "running", 0.0, ctx.settings)  # a killed run leaves this: same commands -> resume
    start = time.perf_counter()
    step_ctx = Context(root, ctx.settings, root / LOGS / f"{step.name}.log", nice=19 if child else 0)
    try:
        timings = []
        for action in step.actions:
            if not child:
                log(f"  $ {action.command}")
            t0 = time.perf_counter()
            if child and action.children:
                action.run(step_ctx)
            elif child:
                from apps.demo.background import run_child, wait

                wait([run_child(action, step_ctx, step_ctx.log_file)], [action.command])
            elif step.blocking:
                action.run(step_ctx)
            else:  # the commands' printed summaries go to logs/STEP.log; progress bars (stderr) stay
                with _stdout_to(step_ctx.log_file, action.command):
                    action.run(step_ctx)
            timings.append(round(time.perf_counter() - t0, 1))
            log(f"  [{step.name}] $ {action.command}\n    ({timings[-1]:.1f} s)" if child else
                f"    ({timings[-1]:.1f} s)")
        if not step.blocking and not step.complete(ctx):
            missing = [p for p in step.outputs if not ctx.path(p).exists()]
            raise StepFailed(f"step {step.name} finished but its outputs are incomplete"
                             + (f": missing {', '.join(missing)}" if missing else " (they do not load)"))
    except KeyboardInterrupt:
        seconds = time.perf_counter() - start
        if step.blocking:  # stopping the app is how the demo ends
            _record(root, step, "stopped", seconds, ctx.settings)
            return StepResult(step.name, "stopped", seconds)
        _record(root, step, "interrupted", seconds, ctx.settings)
        raise
    except Exception as e:
        seconds = time.perf_counter() - start
        _record(root, step, "failed", seconds, ctx.settings, f"{type(e).__name__}: {e}")
        if isinstance(e, StepFailed):
            raise
        raise StepFailed(f"step {step.name} failed: {type(e).__name__}: {e}") from e
    seconds = time.perf_counter() - start
    _record(root, step, "stopped" if step.blocking else "done", seconds, ctx.settings, timings=timings)
    log(f"{head}: done in {seconds:.1f} s")
    return StepResult(step.name, "done", seconds)


class _Background:
    """A step running in a thread that starts its commands as child processes (:mod:`apps.demo.background`)."""

    def __init__(self, step: Step, head: str, ctx: Context, log: Callable[[str], None]) -> None:
        self.result: StepResult | None = None
        self.error: BaseException | None = None

        def work() -> None:
            try:
                self.result = _run_one(step, head, ctx, log, child=True)
            except BaseException as e:  # handed to the main thread by _join
                self.error = e

        self.thread = threading.Thread(target=work, name=f"demo-{step.name}", daemon=True)
        self.thread.start()


def _join(pending: dict[str, _Background], name: str, results: list[StepResult]) -> None:
    """Wait for background step ``name`` (when it is running); re-raise its failure here."""
    bg = pending.pop(name, None)
    if bg is None:
        return
    bg.thread.join()
    if bg.error is not None:
        raise bg.error
    results.append(bg.result)
