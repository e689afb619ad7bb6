"""Exit codes of the `envelope` command, and how an exception maps to one.

The table is part of the command's interface (docs/cli.md): scripts branch
on it, so a code never changes meaning. An exception maps by its class, most
specific first; the message printed for it is one line and never carries
key material (the library's messages never do, and nothing here adds any).
"""

from __future__ import annotations

import enum
import sys

__all__ = ["CliError", "ExitCode", "Terminated", "exit_code_for", "one_line"]


class ExitCode(enum.IntEnum):
    """What the process exit status means."""

    OK = 0
    ERROR = 1
    """Anything not listed below (including internal errors)."""
    USAGE = 2
    """Bad command line or argument value; nothing was done."""
    AUTHENTICATION = 3
    """Data failed authentication: tampered with, corrupt, truncated, moved or copied to another name."""
    NOT_FOUND = 4
    """The container, object or local input file does not exist."""
    EXISTS = 5
    """The container or object already exists (put without --overwrite, create at a taken location)."""
    KMS = 6
    """KMS (or the local keystore) refused or failed: disabled or missing key, access denied, throttled..."""
    STORAGE = 7
    """Storage or local I/O failed (S3 errors, permissions, disk full)."""
    FORMAT = 8
    """A container header or message header is malformed or of an unsupported version."""
    PARTIAL = 9
    """A sweep (rekey) finished, but some objects failed; the report names each with its reason."""
    IN_USE = 10
    """A data-key generation cannot be retired yet: objects or running writers may still use it."""
    INTERRUPTED = 130
    """Interrupted (Ctrl-C); nothing partial was committed."""
    TERMINATED = 143
    """Terminated (SIGTERM); nothing partial was committed."""
    BROKEN_PIPE = 141
    """Whoever read our standard output stopped reading (128 + SIGPIPE, as other tools report it)."""


class CliError(Exception):
    """An error the command line itself raises, with the exit code to use."""

    def __init__(self, message: str, code: ExitCode = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.code = code


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every clean-up on the way out runs."""


_Classes = type[BaseException] | tuple[type[BaseException], ...]


def _botocore(*names: str) -> tuple[type[BaseException], ...]:
    """botocore's exception classes, if botocore was loaded: an exception of a module that was never
    imported cannot be raised, so looking for them must not import botocore (start-up time)."""
    module = sys.modules.get("botocore.exceptions")
    return tuple(getattr(module, n) for n in names) if module is not None else ()


def _aws_usage_errors() -> tuple[type[BaseException], ...]:
    return _botocore("ProfileNotFound", "NoRegionError", "InvalidRegionError", "PartialCredentialsError")


def _by_class() -> tuple[tuple[_Classes, ExitCode], ...]:
    """Ordered most specific first: ObjectNotFoundError is both a StorageError and a FileNotFoundError."""
    from envelope.errors import (
        AuthenticationError,
        FormatError,
        GenerationInUseError,
        KeystoreError,
        KmsError,
        StorageError,
        ValidationError,
    )

    return (
        (AuthenticationError, ExitCode.AUTHENTICATION),
        (GenerationInUseError, ExitCode.IN_USE),
        (ValidationError, ExitCode.USAGE),
        # A bad region from the environment or a profile (--region itself is checked up front).
        (_aws_usage_errors(), ExitCode.USAGE),
        ((KmsError, KeystoreError), ExitCode.KMS),
        (FormatError, ExitCode.FORMAT),
        (FileNotFoundError, ExitCode.NOT_FOUND),
        (FileExistsError, ExitCode.EXISTS),
        (BrokenPipeError, ExitCode.BROKEN_PIPE),
        ((StorageError, OSError), ExitCode.STORAGE),
        (Terminated, ExitCode.TERMINATED),
        (KeyboardInterrupt, ExitCode.INTERRUPTED),
    )


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code for an exception that ended a command."""
    if isinstance(exc, CliError):
        return exc.code
    for classes, code in _by_class():
        if classes and isinstance(exc, classes):
            return code
    return ExitCode.ERROR


def one_line(exc: BaseException) -> str:
    """A one-line description of `exc` for stderr (no traceback, no key material)."""
    from envelope.errors import EnvelopeError

    if isinstance(exc, KeyboardInterrupt):
        return "terminated" if isinstance(exc, Terminated) else "interrupted"
    if isinstance(exc, _botocore("NoRegionError")):
        return "no AWS region configured: pass --region, or set AWS_REGION or a region in your profile"
    if isinstance(exc, OSError) and not isinstance(exc, EnvelopeError) and exc.strerror:
        text = exc.strerror
        if exc.filename is not None:
            text = f"{exc.filename}: {text}"
    else:
        text = str(exc) or type(exc).__name__
        if not isinstance(exc, (EnvelopeError, CliError, *_aws_usage_errors())):
            text = f"internal error: {type(exc).__name__}: {text}"
        reason = _underlying_reason(exc)
        if reason and reason not in text:
            text = f"{text}: {reason}"
    return " ".join(text.split())


def _underlying_reason(exc: BaseException) -> str | None:
    """What the operating system or AWS said, when a library error wraps it (errno text or AWS error code)."""
    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    if isinstance(cause, _botocore("ClientError")):
        response = getattr(cause, "response", None) or {}
        return str(response.get("Error", {}).get("Code", "")) or None
    return None
