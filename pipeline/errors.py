class UsageError(Exception):
    """An argument the run cannot use; the CLI prints the message on one line and exits 2."""
