"""Register coreecho's UniFormer with timm without importing timm at ``import coreecho`` time.

Importing timm costs over a second, so coreecho does not import it eagerly. Instead :func:`install`
registers the encoders right away when timm is already loaded, and otherwise adds a small import hook
that registers them the moment ``timm.models`` finishes importing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

__all__ = ["install"]


def _register() -> None:
    from coreecho.models.uniformer import register_with_timm

    register_with_timm()


class _TimmModelsFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of ``timm.models`` so that registration runs after it executes."""

    def find_spec(self, fullname, path, target=None):  # noqa: D102 - importlib protocol
        if fullname != "timm.models":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            try:
                sys.meta_path.remove(self)
            except ValueError:
                pass
            _register()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Register now if timm is loaded, else once it is (idempotent)."""
    if "timm.models" in sys.modules and hasattr(sys.modules["timm.models"], "register_model"):
        _register()
    elif not any(isinstance(f, _TimmModelsFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TimmModelsFinder())
