"""The app's file route: audio and images served only from inside the workspace.

``GET /files/<relative path>`` answers 404 unless the path, after URL decoding (once by the
server, and again here so a double-encoded ``%252e%252e`` cannot slip through), is relative, has
no ``..`` or empty parts, resolves (symlinks followed) to a regular file inside the workspace,
and has an audio or image extension (or is an SAE's ``density.html`` / its ``plotly.min.js`` under
``saes/``, which the features page shows in a sandboxed iframe). Range requests work (audio players seek).

Example
-------
>>> from flask import Flask
>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp()); _ = (root / "a.png").write_bytes(b"\\x89PNG")
>>> safe_path(root, "a.png") == (root / "a.png").resolve(), safe_path(root, "../etc/passwd")
(True, None)
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from flask import Flask, abort, request, send_file

from apps.data import SERVABLE

FILES_PREFIX = "/files/"
#: plotly pages the app embeds (sandboxed) and their script: served from under ``saes/`` only
PAGE_FILES = frozenset({"density.html", "plotly.min.js"})


def safe_path(root: str | os.PathLike, rel: str) -> Path | None:
    """The file ``rel`` names inside ``root``, or None when it must not be served (see module docstring)."""
    root = Path(root).resolve()
    decoded = unquote(rel)
    for candidate in {rel, decoded}:
        if "\x00" in candidate or "\\" in candidate or candidate.startswith("/") or ":" in candidate:
            return None
        parts = PurePosixPath(candidate).parts
        if not parts or any(p in ("..", ".", "") for p in candidate.split("/")):
            return None
    if decoded != rel:  # a name that still contains an escape is not one of ours
        return None
    try:
        path = (root / rel).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    page = path.name in PAGE_FILES and path.relative_to(root).parts[0] == "saes"
    if path.suffix.lower() not in SERVABLE and not page:
        return None
    return path


def add_file_route(server: Flask, root: str | os.PathLike) -> None:
    """Register ``/files/<path>`` on the Flask ``server`` behind the Dash app."""

    @server.route(FILES_PREFIX + "<path:rel>")
    def workspace_file(rel: str):
        path = safe_path(root, rel)
        if path is None:
            abort(404)
        return send_file(path, conditional=True)

    @server.before_request
    def files_only_through_the_route():
        # paths the route's converter does not take (e.g. "/files//etc/passwd") would otherwise fall
        # through to Dash's catch-all page route and answer 200 with the app's HTML
        if request.path.startswith(FILES_PREFIX) and request.endpoint != "workspace_file":
            abort(404)


def add_upload_route(server: Flask, sessions) -> None:
    """Register ``/upload/<session>/<key>.wav``: a session's own uploaded audio (for its players).

    Both parts must be ids :mod:`apps.sessions` issued; anything else, or another session's key, is 404."""
    from apps.data import PartError

    @server.route("/upload/<sid>/<key>.wav")
    def session_upload(sid: str, key: str):
        try:
            path = sessions.upload_path(sid, key)
        except PartError:
            abort(404)
        return send_file(path, mimetype="audio/wav", conditional=True)
