"""``workbench app WORKSPACE``: serve the Dash workbench app over a workspace.

Example
-------
$ workbench app workspace/demo                      # http://127.0.0.1:8050
$ workbench app workspace/demo --port 8051
"""
from __future__ import annotations

import logging

from workbench.validate import port

log = logging.getLogger(__name__)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def register(subparsers) -> None:
    p = subparsers.add_parser("app", help="serve the Dash app over a workspace (127.0.0.1 by default)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("workspace", help="workspace directory (corpora/, caches/, saes/, probes/, steering/, neuro/)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port, default=8050)
    p.add_argument("--debug", action="store_true", help="Dash dev tools and reloading")
    p.set_defaults(func=run)


def run(args) -> int:
    from apps.app import create_app

    if args.host not in LOCAL_HOSTS:
        log.warning("binding %s: the app (and the workspace's audio) is reachable from other machines", args.host)
    app = create_app(args.workspace)
    print(f"serving {app.workspace.root} on http://{args.host}:{args.port}/")
    app.run(host=args.host, port=args.port, debug=args.debug)
    return 0
