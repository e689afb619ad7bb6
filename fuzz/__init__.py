"""Coverage-guided fuzzing of envelope's parsers.

Two targets, each a plain function over untrusted bytes (`fuzz.targets`):

- ``header``: the container-header parser, `ContainerHeader.from_json`;
- ``message``: the message codec and reader, `dataplane.format.read_header`,
  `body_layout` and `MessageReader` over arbitrary bytes with a fixed key.

The property every target checks: only typed errors (`EnvelopeError`
subclasses) escape, and what parses round-trips. `python -m fuzz` runs a
target under atheris (libFuzzer) when it is installed, or under a plain
seeded mutation loop when it is not; `tests/test_fuzz_smoke.py` runs the
same targets briefly in CI. Nothing here is imported by the library.
"""
