"""``workbench demo``: every part of the workbench on real whisper-tiny.en, offline, ending in the app.

Example
-------
$ workbench demo                                  # workspace/demo, then the app on http://127.0.0.1:8050/
$ workbench demo --quick --no-app --workspace /tmp/demo_quick
$ workbench demo --force sae                      # redo the SAEs (and the steps built on them)
$ workbench demo --list                           # the steps, their commands and whether each is complete
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers) -> None:
    """Add ``demo`` to the ``workbench`` command line (entry point ``apps.demo.cli:register``)."""
    p = subparsers.add_parser(
        "demo", help="run the whole workbench on whisper-tiny.en into one workspace, then open the app",
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Example\n-------\n", 1)[1],
    )
    p.add_argument("--workspace", default="workspace/demo", help="workspace directory (default workspace/demo)")
    p.add_argument("--quick", action="store_true", help="fewer clips and SAE tokens, the same steps (~2 min)")
    p.add_argument("--no-app", action="store_true", help="stop after the last step instead of serving the app")
    p.add_argument("--force", action="append", default=[], metavar="STEP",
                   help="redo STEP and the steps built on it (repeatable)")
    p.add_argument("--only", action="append", default=None, metavar="STEP", help="run just STEP (repeatable)")
    p.add_argument("--shared-data", default=None,
                   help="folder with manifest.jsonl of real clips to add (default: $WORKBENCH_SHARED_DATA or "
                        "../shared/data when present, none with --quick; 'none' to leave them out)")
    p.add_argument("--neuro", choices=["auto", "naplib", "simulated"], default="auto",
                   help="recording for the neuro step: naplib's sample (`make neuro-data`) or a simulated EEG "
                        "(default auto: naplib when installed, simulated with --quick)")
    p.add_argument("--host", default="127.0.0.1", help="host for the app (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8050, help="port for the app (default 8050)")
    p.add_argument("--list", action="store_true", help="list the steps and whether each is complete, run nothing")
    p.set_defaults(func=run)


def _settings(args):
    from apps.demo.steps import DemoSettings, default_shared_data

    if args.shared_data is None:  # its 4.7 minutes of audio would triple the quick demo's caching
        shared = None if args.quick else default_shared_data()
    elif args.shared_data.lower() == "none":
        shared = None
    else:
        shared = Path(args.shared_data)
        if not (shared / "manifest.jsonl").is_file():
            raise FileNotFoundError(f"--shared-data {shared}: no manifest.jsonl there")
    return DemoSettings(quick=args.quick, shared_data=shared, app=not args.no_app, host=args.host, port=args.port,
                        neuro=args.neuro)


def run(args) -> int:
    from apps.demo.report import check_figures, format_headline, headline
    from apps.demo.runner import Context, read_workspace, run_steps
    from apps.demo.steps import demo_steps
    from workbench.atomic import write_json
    from workbench.models import reusing_loaded

    settings = _settings(args)
    root = Path(args.workspace)
    steps = demo_steps(settings)
    if args.list:
        recorded = read_workspace(root)["steps"]
        ctx = Context(root, settings.to_json())
        for s in steps:
            rec = recorded.get(s.name, {})
            if rec.get("status") not in (None, "unavailable") and rec.get("commands") != s.commands():
                state = "outdated"  # made with other commands: the next run redoes it
            elif rec.get("status") == "done":
                state = "complete" if s.complete(ctx) else "incomplete"
            else:
                state = rec.get("status", "not run")
            print(f"{s.name:9s} {state:12s} {s.description}")
            for c in s.commands():
                print(f"    $ {c}")
        return 0
    print(f"workbench demo: workspace {root.resolve()} ({'quick' if settings.quick else 'full'}; "
          f"{'with' if settings.shared_data else 'without'} shared data; neuro on {settings.neuro_data} data)",
          flush=True)
    work = [s for s in steps if not s.blocking]
    start = time.perf_counter()
    from threadpoolctl import threadpool_limits

    # the steps' commands run in this process (each model built once); numpy/scipy on one BLAS thread: the
    # background children keep the other core busy (apps.demo.background.ONE_THREAD: measured)
    with reusing_loaded(), threadpool_limits(1, user_api="blas"):
        results = run_steps(work, root, settings=settings.to_json(), force=args.force, only=args.only,
                            log=lambda msg: print(msg, flush=True))
    seconds = time.perf_counter() - start
    missing = [r for r in results if r.status == "unavailable"]
    print(f"workbench demo: steps finished in {seconds:.0f} s; {sum(r.status == 'done' for r in results)} run, "
          f"{sum(r.status == 'skipped' for r in results)} already complete"
          + (f", not available: {', '.join(r.name for r in missing)}" if missing else ""), flush=True)
    for r in missing:
        print(f"  {r.name}: {r.message}", file=sys.stderr)
    figures = headline(root)
    figures["checks"] = check_figures(figures)  # logs a WARNING with the measured value for each missed figure
    write_json(root / "demo_figures.json", {"steps_seconds": round(seconds, 1), **figures}, indent=2)
    print(format_headline(figures), flush=True)
    app = [s for s in steps if s.blocking]
    if app and args.only is None:
        print(f"workbench demo: serving the app on http://{settings.host}:{settings.port}/ (Ctrl-C stops it)",
              flush=True)
        run_steps(app, root, settings=settings.to_json(), log=lambda msg: print(msg, flush=True))
    return 0
