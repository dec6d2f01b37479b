"""Warnings that point at the user's line, not at coreecho's internals.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_user("a note")
    >>> caught[0].filename.endswith("coreecho/_warnings.py")
    False
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["warn_user"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first stack frame outside the coreecho package.

    The fixed ``stacklevel`` of :func:`warnings.warn` breaks as soon as a call goes through another layer (a method,
    a generator, a CLI); this walks the stack instead (Python 3.12's ``skip_file_prefixes`` does the same).
    """
    level = 2
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
