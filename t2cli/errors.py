"""Error types with the exit codes the CLI maps them to.

Every message is one line that names the problem and the fix; the CLI prints it without a
traceback (unless --debug) and exits with the class's code.
"""

from __future__ import annotations


class T2Error(Exception):
    """Base class: a failure the user can act on."""

    exit_code = 1


class BadInputError(T2Error):
    """Malformed arguments, files or data (exit 2, like a usage error)."""

    exit_code = 2


class NotFoundError(T2Error):
    """A model, expert, version, file or remote that does not exist (exit 3)."""

    exit_code = 3


class IntegrityError(T2Error):
    """A checksum, fingerprint or shape that does not match what was recorded (exit 4)."""

    exit_code = 4


class EngineError(T2Error):
    """An inference engine that cannot be loaded or fails while running (exit 5)."""

    exit_code = 5
