"""The app's file route serves audio and images from inside the workspace only, uploads stay out
of it, and ``workbench app`` binds 127.0.0.1 by default."""
from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from apps.live import decode_upload
from apps.server import safe_path


@pytest.fixture
def tiny_ws(tmp_path) -> Path:
    """A workspace with one clip and one image, a secret beside it and a symlink pointing out."""
    ws = tmp_path / "ws"
    (ws / "corpora" / "c").mkdir(parents=True)
    sf.write(ws / "corpora" / "c" / "a.wav", np.zeros(1600, np.float32), 16000)
    (ws / "neuro" / "n").mkdir(parents=True)
    (ws / "neuro" / "n" / "topo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 32)
    (ws / "notes.txt").write_text("not servable: a text file")
    (tmp_path / "secret.wav").write_bytes((ws / "corpora" / "c" / "a.wav").read_bytes())
    (ws / "corpora" / "c" / "link.wav").symlink_to(tmp_path / "secret.wav")
    (ws / "corpora" / "linkdir").symlink_to(tmp_path)
    return ws


@pytest.fixture
def client(tiny_ws):
    from apps import create_app

    return create_app(tiny_ws).server.test_client()


def test_serves_workspace_audio_and_images(client):
    r = client.get("/files/corpora/c/a.wav")
    assert r.status_code == 200 and r.mimetype.startswith("audio/")
    r = client.get("/files/corpora/c/a.wav", headers={"Range": "bytes=0-9"})  # players seek with ranges
    assert r.status_code == 206 and len(r.data) == 10
    assert client.get("/files/neuro/n/topo.png").mimetype == "image/png"


@pytest.mark.parametrize("path", [
    "/files/../secret.wav", "/files/corpora/../../secret.wav", "/files/%2e%2e/secret.wav",
    "/files/corpora/%2e%2e/%2e%2e/secret.wav", "/files/%252e%252e/secret.wav", "/files/corpora%2f..%2f..%2fsecret.wav",
    "/files//etc/passwd", "/files/%2Fetc%2Fpasswd", "/files/corpora/c/link.wav", "/files/corpora/linkdir/secret.wav",
    "/files/notes.txt", "/files/corpora/c/missing.wav", "/files/corpora/c/a.wav%00.png", "/files/corpora\\..\\..\\secret.wav",
])
def test_traversal_and_other_files_are_404(client, path):
    assert client.get(path).status_code == 404, path


def test_safe_path_rejects_outside(tiny_ws, tmp_path):
    assert safe_path(tiny_ws, "corpora/c/a.wav") == (tiny_ws / "corpora" / "c" / "a.wav").resolve()
    for rel in ("../secret.wav", str(tmp_path / "secret.wav"), "corpora/c/link.wav", "corpora/./c/a.wav", ""):
        assert safe_path(tiny_ws, rel) is None, rel


def test_upload_decoded_in_a_temp_dir_and_size_limited(tiny_ws):
    buf = io.BytesIO()
    sf.write(buf, np.sin(np.arange(8000) / 5).astype(np.float32) * 0.3, 8000, format="WAV")
    url = "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()
    before = sorted(p for p in tiny_ws.rglob("*"))
    audio = decode_upload(url, "clip.wav", sr=16000)
    assert audio.shape == (16000,) and audio.dtype == np.float32  # resampled by the project loader
    assert sorted(p for p in tiny_ws.rglob("*")) == before
    with pytest.raises(ValueError, match="over the"):
        decode_upload(url, "clip.wav", max_bytes=100)
    with pytest.raises(ValueError, match="upload.txt"):
        decode_upload("data:text/plain;base64," + base64.b64encode(b"hello").decode(), "upload.txt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # a fresh interpreter importing torch and dash: 5-30 s on a busy machine
def test_cli_binds_loopback_by_default(tiny_ws):
    import psutil  # through dash[testing], declared in the dev extra
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "app", str(tiny_ws), "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        addrs: list = []
        end = time.monotonic() + 60
        while time.monotonic() < end and not addrs:
            assert proc.poll() is None, proc.stdout.read().decode()
            conns = [c for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
                     for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
            addrs = [c.laddr for c in conns if c.laddr.port == port]
            time.sleep(0.3)
        assert addrs and all(a.ip == "127.0.0.1" for a in addrs), addrs
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        proc.terminate()
        proc.wait(timeout=20)
