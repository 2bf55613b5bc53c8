"""Entry points: the `rlff` command line and Ray job entrypoints."""


class UsageError(ValueError):
    """A command was called with arguments that cannot work; the message is one sentence."""
