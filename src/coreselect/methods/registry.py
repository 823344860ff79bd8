"""Methods by name: ``register`` a strategy class, ``build_strategy(name, **options)``."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from coreselect.methods.base import Strategy


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its name, class, kind ("epoch" | "step"), paper and summary."""

    name: str
    cls: type
    kind: str
    paper: str
    summary: str


_REGISTRY: dict[str, MethodInfo] = {}


def register(name: str, *, paper: str, summary: str = ""):
    """Class decorator: make a strategy class available under ``name``."""

    def deco(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"method {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = MethodInfo(name, cls, getattr(cls, "kind", "epoch"), paper, summary)
        return cls

    return deco


def available_methods() -> list[MethodInfo]:
    """Every registered method, in registration order."""
    _load_builtin()
    return list(_REGISTRY.values())


def get_method(name: str) -> MethodInfo:
    """The registered method ``name``; ValueError listing the valid names otherwise."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; valid names: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def build_strategy(name: str, **options) -> Strategy:
    """Instantiate method ``name`` with ``options``; unknown options raise ValueError."""
    info = get_method(name)
    params = inspect.signature(info.cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    valid = [
        p for p in params if p != "self" and params[p].kind is not inspect.Parameter.VAR_KEYWORD
    ]
    unknown = sorted(set(options) - set(valid))
    if unknown and not takes_any:
        raise ValueError(
            f"method {name!r} has no option(s) {', '.join(unknown)}; "
            f"valid options: {', '.join(valid) or 'none'}"
        )
    return info.cls(**options)


def _load_builtin() -> None:
    import coreselect.methods  # noqa: F401  (importing the package registers every method)
