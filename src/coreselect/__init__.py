"""coreselect: train on a small, provably representative part of the data."""

from coreselect.coreset import Coreset

__version__ = "0.1.0"

__all__ = ["Coreset", "select", "__version__"]


def __getattr__(name):
    # `select` lives in the engine; import it lazily so `import coreselect` stays light.
    if name == "select":
        from coreselect.submodular.select import select

        return select
    raise AttributeError(f"module 'coreselect' has no attribute {name!r}")
