"""Every error class of the project, and the one map from error class to exit code that
`python -m tasks`, the flows and every `tinynlp` subcommand use. Each error a user can act on names
the file, the line or row, the rule and a few offending examples."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


class PipelineError(Exception):
    """Base class for errors a user can act on (bad config, bad data)."""


class ConfigError(PipelineError):
    """params.yaml is invalid: unknown key, wrong type, bad value or missing file."""


class UndeclaredParamError(PipelineError):
    """A stage read a params key that its entry in the stage table (tasks/stages.py) does not
    declare: DVC would not re-run the stage when that key changes."""


class WorkspaceBusyError(PipelineError):
    """Another pipeline run is active in this workspace."""


class RetrainError(PipelineError):
    """The workspace cannot be retrained as it is (not a git repo, uncommitted changes...)."""


class QuantizationError(PipelineError, ValueError):
    """An exported or quantized model is unusable: outputs drift, no calibration data, bad input."""


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


class RequestRefused(Exception):
    """A served request answered at once with `status` (413, 422, 503) and a message naming the
    limit it broke; `retry_after` seconds for a 503 the client may retry."""

    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


# What a finished command means to a script. Drift found is a result, not an error, but scripts
# branch on it, so it has a code of its own.
EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_DATA, EXIT_BUSY, EXIT_DRIFT = 0, 1, 2, 3, 4, 5
EXIT_CODES: dict[type[BaseException], int] = {
    ConfigError: EXIT_CONFIG, DataValidationError: EXIT_DATA, WorkspaceBusyError: EXIT_BUSY}
EXIT_CODES_HELP = (f"exit codes: {EXIT_OK} success, {EXIT_FAILURE} failure, {EXIT_CONFIG} invalid params, "
                   f"{EXIT_DATA} invalid data, {EXIT_BUSY} workspace busy (another run)")


def exit_code(exc: BaseException | None) -> int:
    """The exit code of a command that ended with `exc` (None: it succeeded)."""
    if exc is None:
        return EXIT_OK
    return next((code for kind, code in EXIT_CODES.items() if isinstance(exc, kind)), EXIT_FAILURE)
