"""Entry points: the `rlff` command line and Ray job entrypoints."""
