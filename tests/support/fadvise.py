"""Watch or refuse the writeback hints (`os.posix_fadvise`) a writer gives."""

from __future__ import annotations

import errno
import os

import pytest


def record_fadvise(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """From now on every `posix_fadvise` is recorded as (offset, length, advice), then made."""
    calls: list[tuple[int, int, int]] = []
    real = os.posix_fadvise

    def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
        calls.append((offset, length, advice))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", fadvise)
    return calls


def refuse_fadvise(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on every `posix_fadvise` fails as a file system without the hint would."""

    def refuse(*_: int) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "posix_fadvise", refuse)
