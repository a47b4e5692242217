"""Time `workbench demo` end to end as a user runs it, step by step; prints JSON.

Two ways:

- ``python benchmarks/demo_steps.py [--quick] --workspace W``: runs ``workbench demo --no-app`` in a child
  process (the current checkout and venv) and reports each step's seconds from ``W/workspace.json``;
- ``python benchmarks/demo_steps.py --fresh-clone DIR``: clones this repository into DIR (no ``../shared``
  beside it, no venv) and runs ``make demo`` there, as the README's first command, until the app answers
  on its port; reports the time to the answer, the set-up's share and the steps. The clone's workspace
  and venv stay in DIR for a look afterwards.

Both record the CPU, the core count and the load average before and after (timings on a shared machine
are only comparable side by side). Example::

    python benchmarks/demo_steps.py --quick --workspace /tmp/demo_quick_bench
    python benchmarks/demo_steps.py --fresh-clone /tmp/fresh_demo --port 8063 --then-quick
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def machine() -> dict:
    from workbench.compute import cpu_name

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "load_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def step_seconds(workspace: Path) -> dict:
    doc = json.loads((workspace / "workspace.json").read_text())
    return {name: rec.get("seconds") for name, rec in doc.get("steps", {}).items()}


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def run_in_checkout(args) -> dict:
    ws = Path(args.workspace)
    if ws.exists() and not args.resume:
        shutil.rmtree(ws)
    cmd = [sys.executable, "-m", "workbench", "demo", "--no-app", "--workspace", str(ws)] + (["--quick"] if args.quick else [])
    before = machine()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    figures = json.loads((ws / "demo_figures.json").read_text())
    return {"command": " ".join(cmd[1:]), "wall_s": round(wall, 1), "steps_s": step_seconds(ws),
            "steps_total_s": figures.get("steps_seconds"), "checks": {k: v["status"] for k, v in figures.get("checks", {}).items()},
            "machine_before": before, "load_after": machine()["load_1_5_15"]}


def run_fresh_clone(args) -> dict:
    dest = Path(args.fresh_clone)
    if dest.exists():
        shutil.rmtree(dest)
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    before = machine()
    t0 = time.perf_counter()
    proc = subprocess.Popen(["make", "demo", f"DEMO_ARGS=--port {args.port}"], cwd=dest,
                            stdout=open(dest / "make_demo.log", "w"), stderr=subprocess.STDOUT)
    answered = None
    while proc.poll() is None and time.perf_counter() - t0 < args.timeout:
        if (dest / "workspace" / "demo" / "demo_figures.json").exists() and answers(args.port):
            answered = time.perf_counter() - t0
            break
        time.sleep(1)
    proc.terminate()
    proc.wait()
    ws = dest / "workspace" / "demo"
    figures = json.loads((ws / "demo_figures.json").read_text()) if (ws / "demo_figures.json").exists() else {}
    quick = None
    if args.then_quick:  # the quick demo in the same clone, with the venv that make demo set up
        quick_ws = dest / "workspace" / "quick"
        cmd = [str(dest / ".venv" / "bin" / "workbench"), "demo", "--quick", "--no-app", "--workspace", str(quick_ws)]
        q_before = machine()
        t1 = time.perf_counter()
        subprocess.run(cmd, cwd=dest, check=True, stdout=open(dest / "quick_demo.log", "w"), stderr=subprocess.STDOUT)
        q_fig = json.loads((quick_ws / "demo_figures.json").read_text())
        quick = {"command": "cd " + str(dest) + " && .venv/bin/workbench demo --quick --no-app --workspace workspace/quick",
                 "wall_s": round(time.perf_counter() - t1, 1), "steps_total_s": q_fig.get("steps_seconds"),
                 "steps_s": step_seconds(quick_ws), "checks": {k: v["status"] for k, v in q_fig.get("checks", {}).items()},
                 "machine_before": q_before, "load_after": machine()["load_1_5_15"]}
    return {"command": f"git clone {REPO} {dest} && cd {dest} && make demo", "app_answered_s": answered and round(answered, 1),
            "steps_total_s": figures.get("steps_seconds"),
            "setup_and_app_start_s": answered and figures.get("steps_seconds") and round(answered - figures["steps_seconds"], 1),
            "steps_s": step_seconds(ws) if (ws / "workspace.json").exists() else {},
            "checks": {k: v["status"] for k, v in figures.get("checks", {}).items()},
            "machine_before": before, "load_after": machine()["load_1_5_15"], "log": str(dest / "make_demo.log"),
            **({"quick": quick} if quick else {})}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workspace", default="/tmp/demo_steps_bench")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--resume", action="store_true", help="keep an existing --workspace (complete steps are skipped)")
    p.add_argument("--fresh-clone", metavar="DIR", help="clone the repository into DIR and time `make demo` there")
    p.add_argument("--port", type=int, default=8063, help="--fresh-clone: the app's port")
    p.add_argument("--timeout", type=float, default=3600, help="--fresh-clone: give up after this many seconds")
    p.add_argument("--then-quick", action="store_true",
                   help="--fresh-clone: afterwards also time `workbench demo --quick --no-app` in the clone")
    args = p.parse_args(argv)
    out = run_fresh_clone(args) if args.fresh_clone else run_in_checkout(args)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
