"""``workbench demo``: the whole workbench in one offline command, ending in the app.

The demo is a list of steps (:mod:`apps.demo.steps`) walked by a small runner
(:mod:`apps.demo.runner`) that skips complete steps, resumes killed ones, redoes forced ones and
records every command in ``WORKSPACE/workspace.json``. It lives in ``apps`` because it uses every
package (the core never imports upward).

Example
-------
>>> from apps.demo import DemoSettings, demo_steps, run_steps
>>> results = run_steps(demo_steps(DemoSettings(quick=True, app=False)), "workspace/demo")  # doctest: +SKIP
"""
from apps.demo.runner import Part, Step, read_workspace, run_steps
from apps.demo.steps import DemoSettings, demo_steps

__all__ = ["DemoSettings", "Part", "Step", "demo_steps", "read_workspace", "run_steps"]
