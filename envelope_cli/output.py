"""What commands print: results on stdout (as text or, with --json, one JSON document), notes on stderr.

Results are what a command was asked to show (a key ARN, names, headers)
and are printed even with --quiet; status lines ("put x: 5 bytes") are
suppressed by --quiet. Errors are one line on stderr, prefixed `envelope:`.
Nothing printed here ever holds key material: callers pass public metadata
only (key ARNs, headers, sizes).
"""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["Output"]


class Output:
    def __init__(self, *, json_output: bool, quiet: bool) -> None:
        self.json = json_output
        self.quiet = quiet

    def result(self, data: Any, text: str | None = None) -> None:
        """A command's result: JSON with --json, else `text` (JSON when there is no text form)."""
        if self.json or text is None:
            self.document(data)
        elif text:
            self._line(text)

    def status(self, data: Any, text: str) -> None:
        """A report of what was done: JSON with --json; text unless --quiet."""
        if self.json:
            self.document(data)
        elif not self.quiet:
            self._line(text)

    def progress(self, text: str) -> None:
        """One line of a command's running report on stdout (as it happens): not with --json or --quiet."""
        if not self.json and not self.quiet:
            self._line(text)

    def document(self, data: Any) -> None:
        self._line(json.dumps(data, indent=2, ensure_ascii=False))

    def note(self, text: str) -> None:
        """A remark for the operator on stderr, unless --quiet."""
        if not self.quiet:
            print(f"envelope: {text}", file=sys.stderr, flush=True)

    @staticmethod
    def error(text: str) -> None:
        print(f"envelope: error: {text}", file=sys.stderr, flush=True)

    @staticmethod
    def _line(text: str) -> None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
