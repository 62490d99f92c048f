"""Domain errors: each names the file, the line or row, the rule and a few offending examples."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


class PipelineError(Exception):
    """Base class for errors a user can act on (bad config, bad data)."""


class ConfigError(PipelineError):
    """params.yaml is invalid: unknown key, wrong type, bad value or missing file."""


@dataclass(frozen=True)
class Violation:
    """One broken rule in one file."""

    file: str
    rule: str
    detail: str
    lines: Sequence[int] = field(default_factory=tuple)
    examples: Sequence[str] = field(default_factory=tuple)

    def __str__(self) -> str:
        where = self.file
        if self.lines:
            shown = ", ".join(str(n) for n in list(self.lines)[:5])
            more = f" (+{len(self.lines) - 5} more)" if len(self.lines) > 5 else ""
            where += f" line {shown}{more}"
        text = f"{where}: rule '{self.rule}' failed: {self.detail}"
        if self.examples:
            text += "; e.g. " + ", ".join(_clip(e) for e in list(self.examples)[:5])
        return text


def _clip(example: object, width: int = 60) -> str:
    if isinstance(example, str) and len(example) > width:
        example = example[:width] + "..."
    return repr(example)


class DataValidationError(PipelineError):
    """Input data broke one or more validation rules; nothing downstream was written."""

    def __init__(self, violations: Sequence[Violation]):
        self.violations = list(violations)
        lines = [f"{len(self.violations)} data validation rule(s) failed:"]
        lines += [f"  - {v}" for v in self.violations]
        super().__init__("\n".join(lines))

    @classmethod
    def single(cls, file: str, rule: str, detail: str, lines: Sequence[int] = (),
               examples: Sequence[str] = ()) -> "DataValidationError":
        return cls([Violation(file, rule, detail, tuple(lines), tuple(examples))])
