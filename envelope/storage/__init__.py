"""envelope.storage: where container headers and objects are kept.

Two stores implement one small contract (`Store`): `LocalStore` (files under a
directory) and `S3Store` (objects under a bucket prefix, through a boto3
client the caller supplies). `open_store` turns a path, `file://` or `s3://`
URL into one. Names are checked by `validate_name` before any I/O.

Nothing in this package may encrypt, decrypt or hold key material, and
nothing here may construct a boto3 client.

`S3Store` and `validate_bucket_name` are loaded on first use (`from
envelope.storage import S3Store` works as usual): they import botocore,
which a program that only touches local containers should not pay for.
"""

from typing import TYPE_CHECKING

from envelope.storage._base import BytesLike, ObjectReader, ObjectWriter, RandomAccessReader, Store, read_small
from envelope.storage.local import LocalStore
from envelope.storage.location import Location, open_store, parse_location
from envelope.storage.names import validate_name, validate_prefix

__all__ = [
    "BytesLike",
    "LocalStore",
    "Location",
    "ObjectWriter",
    "ObjectReader",
    "RandomAccessReader",
    "S3Store",
    "Store",
    "open_store",
    "parse_location",
    "read_small",
    "validate_bucket_name",
    "validate_name",
    "validate_prefix",
]

if TYPE_CHECKING:
    # mypy sees ordinary imports (a misspelt name is still an error); at run time, S3 names via `__getattr__`.
    # mypy also proves here that both stores (and their writers and readers) satisfy the protocols.
    from envelope.storage.local import LocalObjectWriter, LocalReader
    from envelope.storage.s3 import S3ObjectWriter, S3Reader, S3Store, validate_bucket_name

    def _conforms(
        *, a: LocalStore, b: S3Store, c: LocalObjectWriter, d: S3ObjectWriter, e: LocalReader, f: S3Reader
    ) -> tuple[Store, Store, ObjectWriter, ObjectWriter, ObjectReader, ObjectReader]:
        return a, b, c, d, e, f


if not TYPE_CHECKING:
    _LAZY = frozenset({"S3Store", "validate_bucket_name"})

    def __getattr__(name: str) -> object:
        """The S3 names on first access (PEP 562); they then live in this module like any other."""
        if name in _LAZY:
            from envelope.storage import s3

            value = getattr(s3, name)
            globals()[name] = value
            return value
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))
