"""The one exception type for user mistakes.

Bad paths, bad files, bad configs and bad command-line values raise
:class:`SparsenuError`. ``sparsenu.cli`` catches it and prints one line
(``sparsenu: error: ...``) with exit status 2. Bugs raise ordinary exceptions.
"""


class SparsenuError(Exception):
    """A user-facing error: bad input, bad file or bad configuration."""
