"""One exception family for everything a user can get wrong."""


class UfoError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class SpecError(UfoError):
    """A search-space or hardware-profile YAML file is malformed."""


class ArchError(UfoError):
    """An arch string, vector or JSON object is malformed or outside its space."""


class CheckpointError(UfoError):
    """A checkpoint or exported model is unreadable or belongs to another space."""


class InterruptReported(KeyboardInterrupt):
    """A Ctrl-C that a child process heard too and has already reported: the CLI exits
    as interrupted without a second line."""


class UfoWarning(UserWarning):
    """Something a user must know but that does not stop the work; the CLI prints it as
    one line."""
