"""Full-page screenshots of the app on a workspace (headless Chromium), for the README.

Serves ``workbench app``'s Dash app in a background thread on a free 127.0.0.1 port, opens each
page in headless Chromium (Selenium; Debian's ``chromium`` + ``chromium-driver``) and saves a
full-page PNG through the DevTools protocol (``Page.captureScreenshot`` with
``captureBeyondViewport``; Selenium's own screenshot is the viewport only).

Example
-------
$ .venv/bin/python -m apps.demo.screenshot workspace/demo docs/screenshots/demo --pages / /steering
"""
from __future__ import annotations

import argparse
import base64
import socket
import threading
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _driver(width: int):
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},1000"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts)


def screenshots(workspace: str | Path, out_dir: str | Path, pages=("/",), width: int = 1400,
                settle_s: float = 4.0) -> list[Path]:
    """Save one PNG per page path of the app on ``workspace`` into ``out_dir``; returns their paths."""
    from apps.app import create_app

    app = create_app(str(workspace))
    port = _free_port()
    threading.Thread(target=lambda: app.run(host="127.0.0.1", port=port, debug=False), daemon=True).start()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    drv = _driver(width)
    saved = []
    try:
        for page in pages:
            drv.get(f"http://127.0.0.1:{port}{page}")
            time.sleep(settle_s)  # Dash renders after load: let callbacks and plotly finish
            size = drv.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
            shot = drv.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
            name = "workspace" if page.strip("/") == "" else page.strip("/").replace("/", "_")
            path = out_dir / f"{name}.png"
            path.write_bytes(base64.b64decode(shot["data"]))
            saved.append(path)
    finally:
        drv.quit()
    return saved


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workspace")
    p.add_argument("out_dir")
    p.add_argument("--pages", nargs="+", default=["/"], help="URL paths (default /)")
    p.add_argument("--width", type=int, default=1400)
    args = p.parse_args(argv)
    for path in screenshots(args.workspace, args.out_dir, args.pages, args.width):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
