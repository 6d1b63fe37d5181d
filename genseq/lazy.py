"""Package attributes imported on first use, so that importing a package does not import torch."""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_attributes(package: str, sources: dict[str, str]) -> tuple[Callable, Callable]:
    """A package's __getattr__ and __dir__ for names (name -> the relative module that defines it) loaded on first use.

        __getattr__, __dir__ = lazy_attributes(__name__, {"LanguageModel": ".model"})
    """
    namespace = vars(sys.modules[package])

    def __getattr__(name: str):
        if name not in sources:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = namespace[name] = getattr(importlib.import_module(sources[name], package), name)  # imported once
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(sources))

    return __getattr__, __dir__
