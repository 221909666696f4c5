"""The one error of the book build."""

__all__ = ["BuildError"]


class BuildError(RuntimeError):
    """The book build failed; the message says which notebook, cell, page or key is at fault."""
