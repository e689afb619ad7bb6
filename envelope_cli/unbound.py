"""Telling an unbound message from a damaged one, for the read commands' error messages.

The library raises one `AuthenticationError` for every message it refuses,
and says nothing more (one error type: nothing to probe). The command line
is run by the owner of the data, so when a read is refused it looks at the
object's public message header (no key, no KMS call) to say which case it is:

- bound to this container (our own message, by the header): it is corrupt,
  tampered with, truncated, or moved from another name: the library's message.
- not bound, but under one of this container's KMS keys and carrying its
  container id: a genuine-looking message another AWS Encryption SDK wrote
  with this container's context (or one of ours whose binding does not
  match): "not written into this container ... use --allow-unbound".
- anything else: another container's or another application's message.

The exit code is 3 in every case: nothing here weakens a refusal, it only
names it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from envelope.errors import AuthenticationError, EnvelopeError
from envelope.header import CONTEXT_CONTAINER_ID

if TYPE_CHECKING:
    from dataplane import Container

__all__ = ["explained", "refusal_reason"]


def refusal_reason(container: Container, name: str, *, allow_unbound: bool) -> str | None:
    """Why reading `name` was refused, from its header; None when it is (by its header) our own message."""
    try:
        info = container.inspect(name)
        keys = {g.key_id for g in container.generations()}
    except EnvelopeError:
        return None  # an unreadable header: the refusal speaks for itself
    if info.bound_to_container:
        return None
    ours = info.encryption_context.get(CONTEXT_CONTAINER_ID) == container.container_id and any(
        provider == "aws-kms" and key in keys for provider, key in info.encrypted_data_keys
    )
    if ours and not allow_unbound:
        return (
            "not written into this container: an unbound message (no name binding; another AWS Encryption "
            "SDK wrote it, under this container's KMS key and id); use --allow-unbound to read it"
        )
    if ours:
        return (
            "not written into this container, and not readable with --allow-unbound: its encryption "
            "context is not exactly this container's (or its data key does not decrypt)"
        )
    return (
        "not written into this container: its encryption context or KMS key is another container's "
        "or another application's (see `envelope inspect`)"
    )


@contextmanager
def explained(container: Container, name: str, *, allow_unbound: bool) -> Iterator[None]:
    """Re-raise an AuthenticationError from opening `name` with the reason its header gives, if any."""
    try:
        yield
    except AuthenticationError as e:
        reason = refusal_reason(container, name, allow_unbound=allow_unbound)
        if reason is None:
            raise
        raise AuthenticationError(f"{name!r}: {reason}") from e
