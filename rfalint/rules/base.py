"""What a rule is: one small class with its code, message, docs and examples.

Modelled on Fixit: every rule carries VALID and INVALID example models that the test
suite runs, so its documentation cannot drift from its behaviour.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterator

import torch.nn as nn

from rfalint.analysis import Analysis


class Severity(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return ["info", "warning", "error"].index(self.value)


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    layer: str | None
    message: str
    remedy: str = ""
    rule: str = ""


@dataclass(frozen=True)
class Example:
    """A model and the input shape (C, *spatial) it is checked at."""

    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]


class Rule(abc.ABC):
    """Subclasses set the class attributes and implement :meth:`check`."""

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity]
    summary: ClassVar[str]
    explanation: ClassVar[str]
    remedy: ClassVar[str] = ""
    valid: ClassVar[list[Example]] = []
    invalid: ClassVar[list[Example]] = []

    @abc.abstractmethod
    def check(self, analysis: Analysis) -> Iterator[Finding]:
        """Yield this rule's findings for one analysed model."""

    def findings_of(self, model: nn.Module, input_shape: tuple[int, ...]) -> list[Finding]:
        """This rule's findings on one model (its examples, as ``rfalint rule`` shows them)."""
        from rfalint.api import analyze  # the API runs the rules: import it when used

        return list(self.check(analyze(model, input_shape)))

    def finding(self, layer: str | None, message: str, remedy: str | None = None) -> Finding:
        return Finding(self.code, self.severity, layer, message,
                       self.remedy if remedy is None else remedy, self.name)


