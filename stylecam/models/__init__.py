"""Architecture registry: weights files name their architecture, and it is rebuilt from here by name."""
from __future__ import annotations

from typing import Callable, Dict

import torch.nn as nn

_REGISTRY: Dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    """Class decorator: make an architecture constructible by name (``build(name, **config)``)."""

    def deco(cls):
        _REGISTRY[name] = cls
        cls.arch_name = name
        return cls

    return deco


def build(name: str, **config) -> nn.Module:
    if name not in _REGISTRY:
        raise KeyError(f"unknown architecture {name!r} (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name](**config)


def names() -> list[str]:
    return sorted(_REGISTRY)


# Importing registers them.
from . import johnson, fast  # noqa: E402,F401
