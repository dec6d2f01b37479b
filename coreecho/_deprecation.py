"""Deprecated aliases for names that moved: the old import path keeps working for one release, with a warning.

:func:`deprecated_aliases` returns a module-level ``__getattr__`` (PEP 562). Each access to an old name imports
its new home, issues a :class:`DeprecationWarning` attributed to the caller's line (``from old import name``
included) and returns the object itself, so behaviour is unchanged.

Example:
    >>> import warnings
    >>> getter = deprecated_aliases("pkg.old", {"dumps": "json"})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     getter("dumps") is __import__("json").dumps
    True
    >>> caught[0].category.__name__, "use json.dumps" in str(caught[0].message)
    ('DeprecationWarning', True)
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Any, Callable

__all__ = ["deprecated_aliases"]


def deprecated_aliases(module: str, aliases: dict[str, str], *, hints: dict[str, str] | None = None,
                       fallback: Callable[[str], Any] | None = None) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves deprecated names from their new homes.

    Args:
        module: the module holding the old names (its ``__name__``).
        aliases: old name → ``"new.module"`` (same name there) or ``"new.module:new_name"``.
        hints: old name → a sentence appended to the warning (what to use instead, when it is not a plain move).
        fallback: called for names that are not aliases (e.g. a package's lazy exports); default: AttributeError.
    """
    hints = hints or {}

    def __getattr__(name: str) -> Any:
        target = aliases.get(name)
        if target is None:
            if fallback is not None:
                return fallback(name)
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        home, _, new = target.partition(":")
        new = new or name
        hint = hints.get(name, "")
        if sys._getframe(1).f_code.co_filename.startswith("<frozen importlib"):
            # ``from package import name`` first probes the name with hasattr; the import statement's own lookup
            # that follows warns, once.
            return getattr(importlib.import_module(home), new)
        warnings.warn(f"{module}.{name} is deprecated and will be removed in the next minor release; "
                      f"use {home}.{new}" + (f". {hint}" if hint else ""), DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(home), new)

    return __getattr__
