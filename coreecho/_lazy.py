"""Lazy exports for packages (PEP 562), and operations bound by name, so that lower layers stay light and one-way.

:func:`lazy_exports` lets a package name its public objects without importing their (heavy) modules.

:func:`declare_operations` / :func:`operation` let a lower layer offer a method whose work is done by a higher
layer, without importing it: the model class (:mod:`coreecho.models.coreecho`) names the operation
(``operation("predict_ef")``), and the package root (:mod:`coreecho`, the top of the import graph, always
imported before any of its submodules) binds the name to ``"module:function"`` in the layer above. The models
layer thus never imports inference or the weights layer, and the binding is declared in one place.

Example:
    >>> __getattr__, __dir__ = lazy_exports("coreecho", {"load_model": "coreecho.hub"})  # doctest: +SKIP
    >>> declare_operations({"dumps": "json:dumps"})
    >>> operation("dumps")([1])
    '[1]'
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

__all__ = ["lazy_exports", "declare_operations", "operation"]

_OPERATIONS: dict[str, str] = {}


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` that import ``name`` from ``exports[name]`` on first access."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        module = sys.modules[package]
        return sorted(set(vars(module)) | set(getattr(module, "__all__", ())))

    return __getattr__, __dir__


def declare_operations(table: dict[str, str]) -> None:
    """Bind operation names to ``"module:function"`` targets (imported when the operation is first used)."""
    for name, target in table.items():
        if ":" not in target:
            raise ValueError(f"operation {name!r}: expected 'module:function', got {target!r}")
    _OPERATIONS.update(table)


def operation(name: str) -> Callable[..., Any]:
    """The function bound to ``name`` by :func:`declare_operations`."""
    try:
        module, _, function = _OPERATIONS[name].partition(":")
    except KeyError:
        raise LookupError(f"no operation {name!r} is declared (declared: {sorted(_OPERATIONS)})") from None
    return getattr(importlib.import_module(module), function)
