"""A rich progress bar that costs nothing when disabled (not a terminal, or quiet)."""

from __future__ import annotations

__all__ = ["ProgressBar"]


class ProgressBar:
    """One rich progress bar (description, bar, ``done/total``, elapsed), transient.

    Args:
        total: number of units (optimizer steps, picks...).
        description: initial text left of the bar.
        disable: draw nothing (every method is then a no-op).
        stderr: draw on stderr, so that stdout stays clean for results.
    """

    def __init__(
        self, total: int, description: str = "", *, disable: bool = False, stderr: bool = False
    ) -> None:
        self.disable = disable
        if disable:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=stderr),
            transient=True,
        )
        self._task = self._bar.add_task(description, total=total)

    def __enter__(self) -> ProgressBar:
        if not self.disable:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.disable:
            self._bar.__exit__(*exc)

    def advance(self) -> None:
        """One unit done."""
        if not self.disable:
            self._bar.advance(self._task)

    def describe(self, text: str) -> None:
        """Replace the text left of the bar."""
        if not self.disable:
            self._bar.update(self._task, description=text)

    def update(
        self, completed: int, description: str | None = None, total: int | None = None
    ) -> None:
        """Set the number of units done (and optionally the text and the total)."""
        if not self.disable:
            self._bar.update(self._task, completed=completed, description=description, total=total)
