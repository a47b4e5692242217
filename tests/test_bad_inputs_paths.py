"""Bad input, part 5: names that become paths (issue 22, case 1).

A manifest row whose clip id is ``../x`` or an absolute path must not make ``corpus build
--textgrids`` or ``steer prepare`` write outside ``--out`` (they did, and exited 0). The id is
mapped to a safe file name (:func:`workbench.names.safe_component`); names a user picks are
refused (:func:`workbench.names.check_component`). Each case checks that the folder around
``--out`` holds nothing new and that nothing existing changed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_bad_inputs import cli, synth, tree_hash  # noqa: F401  (synth is a fixture)
from test_bad_inputs_cache import fresh  # noqa: F401  (a fixture)

from workbench.names import (
    UnsafeNameError,
    check_component,
    child_path,
    is_safe_component,
    safe_component,
)

pytestmark = pytest.mark.usefixtures("one_thread")

HOSTILE = ["../escaped", "../../escaped2", "sub/../../escaped3", "/tmp/wb_abs_escape_{pid}", "..", ".", "", "a\\b",
           "a\x00b"]


@pytest.mark.parametrize("name", HOSTILE)
def test_unsafe_names_are_refused_or_mapped_inside(tmp_path, name):
    assert not is_safe_component(name)
    with pytest.raises(UnsafeNameError, match="clip id"):
        check_component(name, "clip id")
    mapped = safe_component(name)
    assert is_safe_component(mapped) and mapped == safe_component(name)  # deterministic
    assert child_path(tmp_path, name, ".TextGrid", map_unsafe=True).parent == tmp_path


def test_safe_names_are_kept_and_mapped_names_do_not_collide():
    for name in ["jfk", "synth_0001", "spk 1 utt-2.wav", "é_ü", "a" * 200]:
        assert safe_component(name) == name
    assert safe_component("a/b") != safe_component("a_b") and safe_component("a/b") != safe_component("a\\b")
    assert not is_safe_component("a" * 201) and len(safe_component("a" * 400).encode()) <= 200


def test_child_path_refuses_a_symlink_out_of_the_root(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafeNameError, match="outside"):
        child_path(tmp_path / "root", "link")


def _hostile_manifest(folder: Path, ids: list[str], domain: str = "speech", seconds: float = 1.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, cid in enumerate(ids):
        sf.write(folder / f"a{i}.wav", (0.05 * np.random.default_rng(i).standard_normal(int(16000 * seconds)))
                 .astype(np.float32), 16000)
        rows.append({"id": cid, "path": f"a{i}.wav", "domain": domain, "speaker": f"s{i}", "duration_s": seconds,
                     "tiers": {"words": [[0.0, seconds / 2, "hello"], [seconds / 2, seconds, "world"]]}})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "manifest.jsonl"


def _new_files(root: Path, before: dict[str, str], inside: Path) -> list[str]:
    """Files under ``root`` that are new or changed, other than those under ``inside``."""
    after = tree_hash(root)
    return [p for p, h in after.items() if before.get(p) != h and not (root / p).is_relative_to(inside)]


def test_corpus_build_textgrids_writes_nothing_outside_out(capsys, tmp_path):
    abs_target = tmp_path / "abs_escape"
    ids = ["ok", "../escaped", "../../escaped2", str(abs_target)]
    manifest = _hostile_manifest(tmp_path / "src", ids)
    out = tmp_path / "ws" / "corpora" / "c"
    before = tree_hash(tmp_path)
    rc, _, err = cli(capsys, "corpus", "build", manifest, "--out", out, "--textgrids", "--quiet")
    assert rc == 0, err
    assert _new_files(tmp_path, before, out) == []
    assert not abs_target.with_suffix(".TextGrid").exists() and not Path(f"{abs_target}.TextGrid").exists()
    written = sorted(p.name for p in (out / "textgrids").iterdir())
    assert len(written) == 4 and "ok.TextGrid" in written and all(is_safe_component(n) for n in written)
    from workbench.corpus import load_corpus

    assert sorted(c.id for c in load_corpus(out)) == sorted(ids)  # the ids themselves are kept in the manifest


def test_steer_prepare_writes_segments_only_inside_out(capsys, tmp_path):
    manifest = _hostile_manifest(tmp_path / "src", ["../escaped", "/tmp/abs_x", "fine"], domain="environment",
                                 seconds=2.5)
    out = tmp_path / "ws" / "steer"
    before = tree_hash(tmp_path)
    rc, _, err = cli(capsys, "steer", "prepare", manifest, "--out", out, "--seconds", "1")
    assert rc == 0, err
    assert _new_files(tmp_path, before, out) == []
    audio = sorted(p.name for p in (out / "segments" / "audio").iterdir())
    assert len(audio) == 6 and all(is_safe_component(n) for n in audio)


@pytest.mark.parametrize("edit", ["index", "hook"])
def test_edited_cache_files_cannot_point_outside_the_cache(capsys, tmp_path, fresh, edit):
    """index.json names the files a reader opens and cache.json the hook folders: ``../`` there is refused."""
    import shutil

    from test_bad_inputs_cache import HOOKS

    cache = Path(shutil.copytree(fresh, tmp_path / "cache"))
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 1024)
    if edit == "index":
        index = json.loads((cache / "index.json").read_text())
        index["final"]["hooks"][HOOKS[1]]["file"] = "../secret.bin"
        (cache / "index.json").write_text(json.dumps(index))
        named = "'../secret.bin' is outside the cache"
    else:
        for name in ("cache.json", "index.json"):
            text = (cache / name).read_text().replace(HOOKS[1], "../../x")
            (cache / name).write_text(text)
        named = "is outside the cache"  # the files of hook ../../x
    before = tree_hash(tmp_path)
    rc, _, err = cli(capsys, "probe", "--cache", cache, "--target", "phones", "--hooks", "all", "--split", "clip",
                     "--folds", "2", "--out", tmp_path / "probe")
    assert rc == 2 and named in err and "Traceback" not in err, err
    assert tree_hash(tmp_path) == before
    from workbench.cache.store import Store

    with pytest.raises(UnsafeNameError, match=r"hook '../x' in .*cache.json"):
        Store(cache).hook_dir("../x")  # where a build would write a hook's shards
