"""Running `envelope` in-process (main(argv)) with a given stdin, asserting its exit code."""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest

from envelope_cli.main import main


class Run:
    """`run(*argv, code=0, stdin=b"")` -> (stdout, stderr); the exit code must be `code`."""

    def __init__(self, options: list[str], monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
        self.options, self.monkeypatch, self.capsys = options, monkeypatch, capsys

    def __call__(self, *argv: str, code: int = 0, stdin: bytes = b"") -> tuple[str, str]:
        self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        try:
            got = main([*self.options, *argv])
        except SystemExit as e:
            got = int(e.code or 0)
        out, err = self.capsys.readouterr()
        assert got == code, (argv, got, err)
        return out, err
