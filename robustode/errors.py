"""Errors robustode raises for bad input. The CLI prints them as one line."""


class RobustodeError(Exception):
    """Base class: a problem with what the user asked for, not a bug."""


class ConfigError(RobustodeError, ValueError):
    """A setting is malformed or out of range."""


class UnknownNameError(RobustodeError, KeyError):
    """A registry has no entry of that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnknownSpecError(UnknownNameError, ConfigError):
    """A spec (``pgd-x``, ``nope(eps=1)``) that matches no registered form: an unknown name and a bad setting."""


class DuplicateNameError(RobustodeError, ValueError):
    """A name was registered twice."""


class DataError(RobustodeError):
    """A data set is missing, malformed or cannot be downloaded."""


class CheckpointError(RobustodeError):
    """A checkpoint is missing, truncated or corrupt."""


class RecordError(RobustodeError):
    """A result record is malformed or of another schema version."""


class TrainingError(RobustodeError):
    """Training failed (the loss diverged); what was saved is named in the message."""


def first_line(err: BaseException, typed: bool = True) -> str:
    """An exception's message cut to its first line (``TypeName: line`` when ``typed``), for one-line errors."""
    text = str(err).strip()
    if not text:
        return type(err).__name__
    line = text.splitlines()[0]
    return f"{type(err).__name__}: {line}" if typed else line


class SolverError(RobustodeError):
    """An ODE solve failed: it exceeded its step budget or its step size underflowed."""
