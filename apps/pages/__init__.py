"""Pages of the app: one module per URL path (``PATH``, ``TITLE``, ``layout(ws, query)``, ``register(app, ws, jobs)``)."""
