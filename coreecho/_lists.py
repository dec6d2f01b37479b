"""How a list of numbers is written in one cell of a CSV file (``clip_efs``, ``starts``): joined with ``;``.

Every CSV coreecho writes (``coreecho predict``'s rows, ``coreecho evaluate``'s per-video table) joins list cells
with :data:`LIST_SEPARATOR`; :func:`split_values` also reads the spaces that ``coreecho predict`` wrote before
this release, so resumed old files still parse.

Example:
    >>> join_values([50.0, 51.25], "{:.4f}")
    '50.0000;51.2500'
    >>> split_values("50.0000;51.2500"), split_values("50.0 51.25"), split_values("")
    (['50.0000', '51.2500'], ['50.0', '51.25'], [])
"""

from __future__ import annotations

import re
from typing import Any, Iterable

__all__ = ["LIST_SEPARATOR", "join_values", "split_values", "normalize_list_cell"]

#: The separator of the values of a list cell.
LIST_SEPARATOR = ";"

_ANY_SEPARATOR = re.compile(r"[;\s]+")


def join_values(values: Iterable[Any], fmt: str = "{}") -> str:
    """``values`` formatted with ``fmt`` and joined with :data:`LIST_SEPARATOR`."""
    return LIST_SEPARATOR.join(fmt.format(v) for v in values)


def split_values(text: str) -> list[str]:
    """The values of a list cell, separated by ``;`` (this release) or whitespace (older ``predict`` files)."""
    return [v for v in _ANY_SEPARATOR.split(str(text).strip()) if v]


def normalize_list_cell(text: Any) -> Any:
    """A list cell rewritten with :data:`LIST_SEPARATOR` (a non-string is returned as it is)."""
    return LIST_SEPARATOR.join(split_values(text)) if isinstance(text, str) else text
