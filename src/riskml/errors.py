"""The project's one error type, at the bottom of the layers (everything may raise it)."""

from __future__ import annotations


class RiskmlError(Exception):
    """An error the user can fix: bad file, bad column, bad parameter. The message says how."""
