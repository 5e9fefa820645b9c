"""Errors about the user's input (files, checkpoints, config values), reported as one line by the
entry point rather than as a traceback."""


class InputError(ValueError):
    """Bad user input; the message names the file, row or key."""
