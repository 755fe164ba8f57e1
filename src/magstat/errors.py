"""The errors magstat raises: one base class, each edge translates them for its users."""

from __future__ import annotations

__all__ = ["InvalidInputError", "KnowledgeBaseError", "MagstatError"]


class MagstatError(Exception):
    """Base class of every error magstat raises on purpose."""


class InvalidInputError(MagstatError):
    """The input cannot be assessed as given.

    The message always names the field, the value that was refused and what is allowed, so
    that the person who supplied the input can correct it without reading code.

    Args:
        field: where the problem is, as a path (``labs[2].unit``,
            ``Bundle.entry[5](Observation/abc).valueQuantity.unit``).
        problem: what is wrong, in words.
        value: the refused value, if there is one.
        allowed: what would have been accepted.

    """

    def __init__(
        self,
        field: str,
        problem: str,
        *,
        value: object = None,
        allowed: str | None = None,
    ) -> None:
        self.field = field
        self.problem = problem
        self.value = value
        self.allowed = allowed
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The one-line explanation shown to the user."""
        text = f"{self.field}: {self.problem}"
        if self.value is not None:
            shown = repr(self.value)
            if len(shown) > 80:
                shown = shown[:77] + "..."
            text += f" (got {shown})"
        if self.allowed:
            text += f"; allowed: {self.allowed}"
        return text

    def at(self, prefix: str) -> InvalidInputError:
        """Return the same error with ``prefix`` put in front of its field path."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return InvalidInputError(field, self.problem, value=self.value, allowed=self.allowed)


class KnowledgeBaseError(MagstatError):
    """The knowledge base is malformed, uncited or inconsistent; nothing is assessed with it."""
