"""`workbench demo`: the step runner (skip, resume, force, changed settings, failures) on small fake
steps, and the real demo (`--quick --no-app`, real whisper-tiny.en) into a temporary workspace whose
every part must load with the public types."""
from __future__ import annotations

import json

import pytest

from apps.demo.runner import Action, Part, Step, StepFailed, cli, read_workspace, run_steps


def _quiet(msg: str) -> None:
    pass


class Counter:
    """Actions that count their runs and write files, so a test sees what ran and what was skipped."""

    def __init__(self):
        self.runs: list[str] = []

    def writer(self, name: str, rel: str, text: str = "x", fail_after: bool = False) -> Action:
        def run(ctx):
            self.runs.append(name)
            path = ctx.path(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():  # resuming: the earlier, interrupted run left this
                text_now = path.read_text() + "+resumed"
            else:
                text_now = text
            path.write_text(text_now)
            if fail_after:
                raise KeyboardInterrupt  # as if the demo were killed here
        return Action(f"write {rel} {text}", run)


def _steps(c: Counter, text: str = "x", kill_b: bool = False) -> list[Step]:
    a = Step("a", "first", actions=[c.writer("a", "corpora/a/data.txt", text)], outputs=["corpora/a/data.txt"],
             parts=[Part("corpora", "a", "corpora/a")])
    b = Step("b", "second, built on a", actions=[c.writer("b1", "caches/b/one.txt"),
                                                 c.writer("b2", "caches/b/two.txt", fail_after=kill_b)],
             outputs=["caches/b/one.txt", "caches/b/two.txt"], parts=[Part("caches", "b", "caches/b")], needs=["a"])
    d = Step("d", "independent", actions=[c.writer("d", "probes/d/out.txt")], outputs=["probes/d/out.txt"])
    return [a, b, d]


def test_runs_then_skips_complete_steps_and_records_commands(tmp_path):
    c = Counter()
    res = run_steps(_steps(c), tmp_path, settings={"quick": True}, log=_quiet)
    assert [r.status for r in res] == ["done", "done", "done"] and c.runs == ["a", "b1", "b2", "d"]
    ws = read_workspace(tmp_path)
    assert ws["steps"]["b"]["commands"] == ["write caches/b/one.txt x", "write caches/b/two.txt x"]
    assert ws["steps"]["b"]["status"] == "done" and ws["steps"]["b"]["seconds"] >= 0
    assert ws["parts"]["caches/b"]["step"] == "b" and ws["parts"]["corpora/a"]["path"] == "corpora/a"
    assert ws["settings"] == {"quick": True}
    c.runs.clear()
    res = run_steps(_steps(c), tmp_path, log=_quiet)
    assert [r.status for r in res] == ["skipped"] * 3 and c.runs == []
    assert set(read_workspace(tmp_path)["parts"]) == {"corpora/a", "caches/b"}  # skipping keeps the parts listed


def test_missing_output_reruns_the_step(tmp_path):
    c = Counter()
    run_steps(_steps(c), tmp_path, log=_quiet)
    (tmp_path / "probes/d/out.txt").unlink()
    c.runs.clear()
    res = run_steps(_steps(c), tmp_path, log=_quiet)
    assert [r.status for r in res] == ["skipped", "skipped", "done"] and c.runs == ["d"]


def test_killed_step_resumes_where_it_stopped(tmp_path):
    c = Counter()
    with pytest.raises(KeyboardInterrupt):
        run_steps(_steps(c, kill_b=True), tmp_path, log=_quiet)
    assert read_workspace(tmp_path)["steps"]["b"]["status"] == "interrupted"
    assert "caches/b" not in read_workspace(tmp_path)["parts"]
    c.runs.clear()
    res = run_steps(_steps(c), tmp_path, log=_quiet)
    # a (complete) is skipped; b runs again on top of what it left (its commands are the same, so
    # nothing is removed: the underlying commands resume); d runs for the first time
    assert [r.status for r in res] == ["skipped", "done", "done"] and c.runs == ["b1", "b2", "d"]
    assert (tmp_path / "caches/b/two.txt").read_text() == "x+resumed"


def test_force_redoes_the_step_and_what_builds_on_it(tmp_path):
    c = Counter()
    run_steps(_steps(c), tmp_path, log=_quiet)
    (tmp_path / "corpora/a/stale.txt").write_text("from before")
    c.runs.clear()
    res = run_steps(_steps(c), tmp_path, force=["a"], log=_quiet)
    assert [r.status for r in res] == ["done", "done", "skipped"] and c.runs == ["a", "b1", "b2"]
    assert not (tmp_path / "corpora/a/stale.txt").exists()  # outputs removed before the redo
    assert (tmp_path / "caches/b/two.txt").read_text() == "x"  # redone from scratch, not resumed


def test_redo_interrupted_before_the_dependents_still_redoes_them_next_time(tmp_path):
    c = Counter()
    run_steps(_steps(c), tmp_path, log=_quiet)
    with pytest.raises(KeyboardInterrupt):  # a is forced, then b is killed: b resumes, and what b made is new
        run_steps(_steps(c, kill_b=True), tmp_path, force=["a"], log=_quiet)
    c.runs.clear()
    res = run_steps(_steps(c), tmp_path, only=["a"], force=["a"], log=_quiet)  # redo a alone: b goes stale
    assert [r.status for r in res] == ["done"] and read_workspace(tmp_path)["steps"]["b"]["status"] == "stale"
    res = run_steps(_steps(c), tmp_path, log=_quiet)
    assert [r.status for r in res] == ["skipped", "done", "skipped"]
    assert (tmp_path / "caches/b/two.txt").read_text() == "x"  # made afresh, not resumed on the old files


def test_changed_settings_redo_the_step_from_scratch(tmp_path):
    c = Counter()
    run_steps(_steps(c, text="small"), tmp_path, log=_quiet)
    c.runs.clear()
    res = run_steps(_steps(c, text="large"), tmp_path, log=_quiet)
    assert [r.status for r in res] == ["done", "done", "skipped"]
    assert (tmp_path / "corpora/a/data.txt").read_text() == "large"
    assert read_workspace(tmp_path)["steps"]["a"]["commands"] == ["write corpora/a/data.txt large"]


def test_unknown_step_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown step 'nope'.*a, b, d"):
        run_steps(_steps(Counter()), tmp_path, force=["nope"], log=_quiet)


def test_unavailable_step_is_reported_and_the_rest_runs(tmp_path):
    c = Counter()
    steps = _steps(c)
    steps.insert(2, Step("later", "not built yet", available=lambda: "`workbench later` is not installed"))
    logged = []
    res = run_steps(steps, tmp_path, log=logged.append)
    assert [r.status for r in res] == ["done", "done", "unavailable", "done"]
    assert any("later: not available: `workbench later` is not installed" in m for m in logged)
    rec = read_workspace(tmp_path)["steps"]["later"]
    assert (rec["status"], rec["message"]) == ("unavailable", "`workbench later` is not installed")


def test_failing_command_names_the_step_and_command(tmp_path, capsys):
    bad = Step("bad", "a command with a missing input",
               actions=[cli("corpus", "info", "@corpora/missing")], outputs=["corpora/missing/manifest.jsonl"])
    with pytest.raises(StepFailed, match=r"`workbench corpus info corpora/missing` exited with status 2"):
        run_steps([bad], tmp_path, log=_quiet)
    rec = read_workspace(tmp_path)["steps"]["bad"]
    assert rec["status"] == "failed" and rec["commands"] == ["workbench corpus info corpora/missing"]
    assert "corpora/missing" in capsys.readouterr().err


def test_step_whose_outputs_stay_missing_fails(tmp_path):
    c = Counter()
    step = Step("s", "writes the wrong file", actions=[c.writer("s", "probes/s/other.txt")], outputs=["probes/s/out.txt"])
    with pytest.raises(StepFailed, match="missing probes/s/out.txt"):
        run_steps([step], tmp_path, log=_quiet)


def test_cli_action_records_workspace_relative_paths_and_logs_output(tmp_path):
    step = Step("ns", "non-speech", actions=[cli("corpus", "nonspeech", "--n", "2", "--out", "@corpora/ns", "-q")],
                outputs=["corpora/ns/manifest.jsonl"])
    run_steps([step], tmp_path, log=_quiet)
    assert read_workspace(tmp_path)["steps"]["ns"]["commands"] == ["workbench corpus nonspeech --n 2 --out corpora/ns -q"]
    log = (tmp_path / "logs/ns.log").read_text()
    assert log.startswith("$ workbench corpus nonspeech") and "clips:    2" in log
    assert len((tmp_path / "corpora/ns/manifest.jsonl").read_text().splitlines()) == 2


def test_removing_outputs_never_leaves_the_workspace(tmp_path):
    evil = Step("evil", "points outside", actions=[], outputs=["../outside/x"], removes=["../outside"])
    (tmp_path / "ws").mkdir()
    (tmp_path / "outside").mkdir()
    with pytest.raises(ValueError, match="outside the workspace"):
        run_steps([evil], tmp_path / "ws", force=["evil"], log=_quiet)
    assert (tmp_path / "outside").is_dir()


# --- the real demo ------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.real_weights
def test_quick_demo_builds_a_workspace_that_loads(tmp_path, tiny_en_wheel, capsys):
    import numpy as np
    import pandas as pd

    from apps.demo.steps import LAST_HOOK, MIDDLE_HOOK, MODEL
    from workbench.cache import ActivationCache
    from workbench.cli import main
    from workbench.corpus import load_corpus
    from workbench.features import FeatureDictionary

    ws = tmp_path / "demo"
    assert main(["demo", "--quick", "--no-app", "--shared-data", "none", "--workspace", str(ws)]) == 0
    record = json.loads((ws / "workspace.json").read_text())

    corpora = {n: load_corpus(ws / "corpora" / n) for n in ("speech", "nonspeech", "demo", "dev", "heldout")}
    assert sorted(p.name for p in (ws / "corpora").iterdir()) == ["audiobook", "demo", "dev", "heldout", "nonspeech",
                                                                  "sae_holdout.txt", "speech"]
    assert set(corpora["demo"].summary()["domains"]) == {"speech", "music", "environment"}
    assert len(corpora["speech"].summary()["speakers"]) >= 3
    fit_ids, heldout_ids = {c.id for c in corpora["demo"]}, {c.id for c in corpora["heldout"]}
    dev_ids = {c.id for c in corpora["dev"]}
    # the SAE is scored on real held-out speech (naplib audiobook segments), the steering on never-cached ones
    sae_holdout = set((ws / "corpora" / "sae_holdout.txt").read_text().split())
    assert sae_holdout and sae_holdout <= fit_ids
    assert all(c.transcript for c in load_corpus(ws / "corpora" / "audiobook" / "heldout"))
    steer_ids = {c.id for c in load_corpus(ws / "corpora" / "audiobook" / "steer")}
    assert steer_ids and steer_ids <= heldout_ids
    assert not fit_ids & heldout_ids and not dev_ids & (fit_ids | heldout_ids)  # ids of their own
    # the steering sweep's dev speech is real: an audiobook excerpt of its own (aligned segments)
    assert "corpora/audiobook/dev" in record["parts"]["corpora/dev"]["command"]
    assert all(c.transcript for c in load_corpus(ws / "corpora" / "audiobook" / "dev"))

    whisper = ActivationCache.open(ws / "caches" / MODEL)
    assert {f"encoder.blocks.{i}.hook_resid_post" for i in range(4)} <= set(whisper.hooks)
    assert sorted(whisper.clip_ids) == sorted(fit_ids)
    tokens = ActivationCache.open(ws / "caches" / "auristream-tiny")
    coch = ActivationCache.open(ws / "caches" / "cochleagram")
    assert tokens.hook_dtype("tokens.hook_ids") == "int32" and coch.d_model("cochleagram.hook_out") == 211

    assert not (ws / "saes" / MODEL / MIDDLE_HOOK).exists()  # --quick trains the last block's SAE only
    for hook in (LAST_HOOK,):
        fd = FeatureDictionary.load(ws / "saes" / MODEL / hook)
        assert fd.hook_name == hook and fd.d_in == 384
        ev = json.loads((ws / "saes" / MODEL / "eval" / hook / "eval.json").read_text())
        assert 0 <= ev["metrics"]["fvu"] < 1 and "splice" in ev
        feats = pd.read_parquet(ws / "saes" / MODEL / "eval" / hook / "features.parquet")
        assert len(feats) == fd.d_sae
        assert record["parts"][f"saes/{MODEL}/{hook}"]["step"] == "sae"

    summary = pd.read_csv(ws / "probes" / "phones" / "summary.csv")
    assert len(summary) == len(whisper.hooks)
    assert (summary["accuracy"] > summary["majority"]).all()  # phones are decodable from every layer

    steer = json.loads((ws / "steering" / "nonspeech" / "steering.json").read_text())
    ev = json.loads((ws / "steering" / "nonspeech" / "eval" / "eval.json").read_text())
    assert steer["hook"] == LAST_HOOK
    assert {"baseline", "steered", "no_speech_gate", "vad_gate", "clips"} <= set(ev)
    assert {c["id"] for c in ev["clips"]} <= heldout_ids
    neuro = [p for p in (ws / "neuro").iterdir() if (p / "summary.csv").is_file()]
    assert len(neuro) == 1
    table = pd.read_csv(neuro[0] / "summary.csv")
    assert {"feature", "channel", "r", "p_fdr"} <= set(table.columns) and np.isfinite(table["r"]).all()

    figures = json.loads((ws / "demo_figures.json").read_text())
    assert figures["probes"]["phones"]["peak_hook"] in whisper.hooks
    assert set(figures["saes"]) == {f"{MODEL}/{LAST_HOOK}"}
    assert set(figures["checks"]) == {"sae_wer", "steering", "neuro_planted", "tokens"}
    assert all(c["status"] in ("met", "missed") for c in figures["checks"].values())  # --quick measures all four
    assert figures["tokens"]["codes_used"] > 64  # the 8192-code LFQ codebook, not the old 64-code k-means
    assert figures["neuro"]["simulated"]["planted"]["feature"] == MIDDLE_HOOK  # block 1 planted, as in the full demo

    for name, rec in record["steps"].items():
        assert rec["status"] == "done", (name, rec)  # every step's sub-command exists: none may be "unavailable"
        assert all(c.startswith(("workbench ", "python ")) for c in rec["commands"])
    assert record["steps"]["probes"]["seconds"] > 0  # ran in the background, recorded like any step

    # a second run finds every step complete and redoes nothing
    capsys.readouterr()
    assert main(["demo", "--quick", "--no-app", "--shared-data", "none", "--workspace", str(ws)]) == 0
    out = capsys.readouterr().out
    assert out.count("complete, skipped") == sum(r["status"] == "done" for r in record["steps"].values())


def _nonspeech(rel: str, seed: int) -> Action:
    return cli("corpus", "nonspeech", "--n", "2", "--seed", str(seed), "--duration", "0.5", "--out", f"@{rel}", "-q")


@pytest.mark.slow  # three child interpreters: ~10 s on an idle machine
def test_background_step_runs_in_a_child_beside_the_next_steps_and_before_what_needs_it(tmp_path):
    """A background step runs its workbench commands in child processes; an independent step runs meanwhile,
    a step that needs it waits for it; both record like any step. A failing child fails its step."""
    from apps.demo.background import parallel

    c = Counter()
    order = []
    bg = Step("bg", "two corpora side by side, in the background",
              actions=[parallel(_nonspeech("corpora/x", 0), _nonspeech("corpora/y", 1))],
              outputs=["corpora/x/manifest.jsonl", "corpora/y/manifest.jsonl"], background=True)

    def after(ctx):  # runs only once bg is complete
        order.append((ctx.path("corpora/x/manifest.jsonl").exists(), ctx.path("corpora/y/manifest.jsonl").exists()))
        c.writer("after", "probes/after.txt").run(ctx)

    indep = Step("indep", "independent", actions=[c.writer("indep", "probes/indep.txt")], outputs=["probes/indep.txt"])
    needs = Step("needs", "built on bg", actions=[Action("after", after)], outputs=["probes/after.txt"], needs=["bg"])
    res = run_steps([bg, indep, needs], tmp_path, log=_quiet)
    assert sorted(r.status for r in res) == ["done"] * 3 and order == [(True, True)]
    ws = read_workspace(tmp_path)
    assert ws["steps"]["bg"]["status"] == "done" and ws["steps"]["bg"]["commands"][0].endswith(" & wait")
    assert "$ workbench corpus nonspeech" in (tmp_path / "logs" / "bg.log").read_text()
    # a child that fails fails its step, with the command named
    broken = Step("broken", "a bad argument", actions=[cli("corpus", "nonspeech", "--n", "nope", "--out", "@z")],
                  outputs=["z/manifest.jsonl"], background=True)
    with pytest.raises(StepFailed, match="corpus nonspeech --n nope"):
        run_steps([broken], tmp_path, log=_quiet)
    assert read_workspace(tmp_path)["steps"]["broken"]["status"] == "failed"


@pytest.mark.slow  # one child interpreter per sequence: ~10 s on an idle machine
def test_a_sequence_runs_its_commands_in_one_child_in_order_and_stops_at_a_failure(tmp_path):
    """``sequence``: one child process runs the commands one after another (a background step pays its imports
    once); the second command sees the first one's output; a failing command fails the step and stops it."""
    from apps.demo.background import sequence

    merge = cli("corpus", "build", "@corpora/a", "@corpora/b", "--out", "@corpora/ab", "-q")
    b = cli("corpus", "nonspeech", "--n", "2", "--seed", "1", "--duration", "0.5", "--id-prefix", "b_", "--out", "@corpora/b",
            "-q")
    step = Step("seq", "three commands, one child", actions=[sequence(_nonspeech("corpora/a", 0), b, merge)],
                outputs=["corpora/ab/manifest.jsonl"], background=True)
    assert run_steps([step], tmp_path, log=_quiet)[0].status == "done"
    assert len((tmp_path / "corpora" / "ab" / "manifest.jsonl").read_text().splitlines()) == 4
    assert read_workspace(tmp_path)["steps"]["seq"]["commands"][0].count(" && ") == 2
    bad = Step("bad", "fails first", actions=[sequence(cli("corpus", "nonspeech", "--n", "nope", "--out", "@z"),
                                                       _nonspeech("corpora/never", 2))],
               outputs=["corpora/never/manifest.jsonl"], background=True)
    with pytest.raises(StepFailed, match="corpus nonspeech --n nope"):
        run_steps([bad], tmp_path, log=_quiet)
    assert not (tmp_path / "corpora" / "never").exists()
