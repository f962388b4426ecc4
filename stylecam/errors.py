"""One exception type for everything a user can get wrong: the CLI prints its message as one line."""


class StylecamError(Exception):
    """A user-facing problem: bad input, missing file, no camera. ``str()`` is the whole message."""
