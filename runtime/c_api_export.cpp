// Anchor for the shared library libmlajit: its symbols come from mlajit_runtime (whole archive).
