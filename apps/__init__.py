"""The top floor: the Dash workbench app over a workspace (``workbench app WORKSPACE``).

Example
-------
>>> from apps import create_app
>>> app = create_app("workspace/demo")      # doctest: +SKIP
"""


def create_app(workspace, jobs=None):
    """The Dash app for ``workspace`` (see :func:`apps.app.create_app`)."""
    from apps.app import create_app as _create

    return _create(workspace, jobs)
