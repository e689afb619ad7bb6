"""`LocalKms`: a file-backed keystore with KMS semantics, for the no-AWS default and tests.

It is a stand-in for AWS KMS on one machine, not a hardware boundary: whoever
can read the keystore directory can decrypt every container under it. What it
does keep from KMS is the behaviour the planes rely on: keys addressed by id,
ARN, alias name and alias ARN; the encryption context authenticated (a wrong
or missing context fails with `InvalidCiphertextError`); key states (enabled,
disabled, pending deletion) with KMS's errors; the same request validation.

Files are created 0600 in a 0700 directory and refused when group- or
world-accessible. Mutations take an exclusive `flock` and replace files
atomically, so several threads and processes can share one keystore.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import json
import os
import re
import secrets
import stat
import struct
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NoReturn

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envelope import kmsparams as v
from envelope.datakey import DataKey, GeneratedDataKey
from envelope.errors import (
    DisabledError,
    IncorrectKeyError,
    InvalidCiphertextError,
    KeystoreError,
    KmsInvalidResponseError,
    KMSInvalidStateError,
    KmsNotFoundError,
    ValidationError,
)
from envelope.kmsarn import ALIAS_NAME

__all__ = ["KeyInfo", "LocalKms"]

PROVIDER_ID = "local"
_ACCOUNT = "000000000000"
_REGION = "local"
_BLOB_MAGIC = b"ELK\x01"
_NONCE = 12
_TAG = 16
_BLOB_HEADER = len(_BLOB_MAGIC) + 16 + _NONCE
_PARTITION = "aws"
_KEY_ARN_PREFIX = f"arn:{_PARTITION}:kms:{_REGION}:{_ACCOUNT}:key/"
_ALIAS_ARN_PREFIX = f"arn:{_PARTITION}:kms:{_REGION}:{_ACCOUNT}:"
# Key ids as `create_key` makes them (str(uuid4())); anything else cannot name a key file.
_CANONICAL_KEY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DESCRIPTION_MAX = 8192
ENABLED, DISABLED, PENDING_DELETION = "Enabled", "Disabled", "PendingDeletion"


@attrs.frozen
class KeyInfo:
    """Public metadata of a local key (no key material)."""

    key_id: str
    arn: str
    state: str
    aliases: tuple[str, ...]
    created_at: str
    deletion_date: str | None = None


class _Material:
    """A master key as stored (base64), whose repr, str and pickling never show it."""

    __slots__ = ("_b64",)

    def __init__(self, b64: str) -> None:
        self._b64 = b64

    @classmethod
    def of(cls, record: dict[str, Any]) -> _Material:
        material = record.get("material")
        if not isinstance(material, _Material):
            raise KeystoreError(f"keystore record of {record.get('arn')} has no usable key material")
        return material

    def aead(self) -> AESGCM:
        try:
            return AESGCM(base64.b64decode(self._b64, validate=True))
        except (ValueError, TypeError):
            raise KeystoreError("a keystore record's key material is corrupt") from None

    @staticmethod
    def to_json(value: object) -> str:
        if isinstance(value, _Material):
            return value._b64
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    def __repr__(self) -> str:
        return "<key material>"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("key material cannot be pickled")


def _context_aad(key_uuid: bytes, context: Mapping[str, str]) -> bytes:
    canonical = json.dumps(dict(sorted(context.items())), ensure_ascii=False, separators=(",", ":"))
    return _BLOB_MAGIC + key_uuid + struct.pack(">I", len(canonical)) + canonical.encode("utf-8")


def _check_keystore_path(path: object) -> str:
    """The keystore directory as a str path; ValidationError for anything the filesystem cannot take."""
    raw = os.fspath(path) if isinstance(path, os.PathLike) else path
    if not isinstance(raw, str):
        raise ValidationError(
            f"the keystore path must be a str path (or os.PathLike of one), not {type(path).__name__}"
        )
    if not raw:
        raise ValidationError("the keystore path must not be empty")
    if "\x00" in raw:
        raise ValidationError("the keystore path must not contain NUL")
    try:
        os.fsencode(raw)
    except UnicodeEncodeError:
        raise ValidationError(
            f"the keystore path cannot be encoded with the filesystem encoding ({sys.getfilesystemencoding()})"
        ) from None
    return raw


class LocalKms:
    """A local, file-backed KMS: `generate_data_key_without_plaintext` and `decrypt`, plus key admin."""

    provider_id = PROVIDER_ID

    def __init__(self, path: str | os.PathLike[str], *, clock: Any = None) -> None:
        self.path = Path(_check_keystore_path(path))
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._lock = threading.Lock()
        if self.path.exists():
            self._check_private(self.path, directory=True)

    def __repr__(self) -> str:
        return f"LocalKms({str(self.path)!r})"

    # -- files -------------------------------------------------------------

    @staticmethod
    def _check_private(path: Path, *, directory: bool = False) -> None:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            raise KeystoreError(f"keystore path {path} is a symlink; refusing it")
        if directory and not stat.S_ISDIR(st.st_mode):
            raise KeystoreError(f"keystore path {path} is not a directory")
        if st.st_mode & 0o077:
            raise KeystoreError(
                f"keystore {'directory' if directory else 'file'} {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):o}); run: chmod {'700' if directory else '600'} {path}"
            )

    def _ensure_dirs(self) -> None:
        for d in (self.path, self.path / "keys"):
            with suppress(FileExistsError):
                d.mkdir(mode=0o700)
            self._check_private(d, directory=True)

    def _read_json(self, path: Path) -> Any:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise KeystoreError(f"cannot open keystore file {path}: {e.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            if os.fstat(f.fileno()).st_mode & 0o077:
                raise KeystoreError(f"keystore file {path} is accessible by group or others; run: chmod 600 {path}")
            try:
                return json.loads(f.read())
            except ValueError:
                raise KeystoreError(f"keystore file {path} is corrupt") from None

    def _write_json(self, path: Path, doc: Any) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(doc, indent=1, sort_keys=True, default=_Material.to_json).encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    @contextmanager
    def _mutating(self) -> Iterator[None]:
        self._ensure_dirs()
        with self._lock:
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _aliases(self) -> dict[str, str]:
        doc = self._read_json(self.path / "aliases.json")
        return dict(doc) if isinstance(doc, dict) else {}

    def _key_path(self, key_uuid: str) -> Path:
        return self.path / "keys" / f"{key_uuid}.json"

    def _load_key(self, key_uuid: str) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        self._check_private(self.path, directory=True)
        doc = self._read_json(self._key_path(key_uuid))
        if not isinstance(doc, dict):
            return None
        if isinstance(doc.get("material"), str):
            # Held in a wrapper from here on: a record sits in frames that raise (disabled key, wrong
            # context), and error trackers print those frames' locals.
            doc["material"] = _Material(doc["material"])
        return doc

    def _arn(self, key_uuid: str) -> str:
        return _KEY_ARN_PREFIX + key_uuid

    def _resolve(self, key_id: str) -> dict[str, Any]:
        """The key record for any of the four KeyId forms; KmsNotFoundError if there is none."""
        form = v.key_id_form(key_id)
        target: str | None
        if form == "key-id":
            target = key_id.lower()
        elif form == "key-arn":
            # Only the ARN exactly as KMS returned it (as stored in the record) names the key: another
            # account, region or partition, or another spelling of the key id, is another key.
            target = key_id[len(_KEY_ARN_PREFIX) :] if key_id.startswith(_KEY_ARN_PREFIX) else None
        else:
            alias = key_id if form == "alias-name" else key_id.split(":", 5)[5]
            if form == "alias-arn" and not key_id.startswith(_ALIAS_ARN_PREFIX):
                target = None
            else:
                target = self._aliases().get(alias) if self.path.exists() else None
        record = self._load_key(target) if target and _CANONICAL_KEY_ID.fullmatch(target) else None
        if record is None or (form == "key-arn" and record.get("arn") != key_id):
            raise KmsNotFoundError(f"key {key_id!r} does not exist in the local keystore")
        return record

    @staticmethod
    def _answered_arn(operation: str, key_id: str | None, record: dict[str, Any]) -> str:
        """The ARN this keystore answers with, held to the rule AwsKms holds KMS to: a record
        edited to name another account, region or key is an invalid response, not a key."""
        arn = v.checked_response_key_arn(operation, {"KeyId": record.get("arn")})
        v.check_response_key(operation, key_id, arn, region=_REGION, partition=_PARTITION)
        if arn.account != _ACCOUNT or arn.resource_id != record.get("key_id"):
            raise KmsInvalidResponseError(
                "invalid response: the keystore record names another key than its own", operation=operation
            )
        return str(arn)

    @staticmethod
    def _require_usable(record: dict[str, Any]) -> None:
        if record["state"] == DISABLED:
            raise DisabledError(f"{record['arn']} is disabled.")
        if record["state"] != ENABLED:
            raise KMSInvalidStateError(f"{record['arn']} is pending deletion.")

    # -- key administration -------------------------------------------------

    def create_key(self, *, alias: str | None = None, description: str = "") -> str:
        """Create a 256-bit key; returns its ARN. `alias` is spelled the KMS way: alias/NAME."""
        if alias is not None:
            self._check_alias(alias)
        if not isinstance(description, str) or len(description) > _DESCRIPTION_MAX:
            raise ValidationError(f"description must be a str of at most {_DESCRIPTION_MAX} characters")
        key_uuid = str(uuid.uuid4())
        record = {
            "key_id": key_uuid,
            "arn": self._arn(key_uuid),
            "state": ENABLED,
            "created_at": self._clock().isoformat(),
            "deletion_date": None,
            "description": description,
            "material": _Material(base64.b64encode(secrets.token_bytes(32)).decode()),
        }
        with self._mutating():
            if alias is not None and alias in self._aliases():
                raise ValidationError(f"alias {alias} already exists")
            self._write_json(self._key_path(key_uuid), record)
            if alias is not None:
                aliases = self._aliases()
                aliases[alias] = key_uuid
                self._write_json(self.path / "aliases.json", aliases)
        return str(record["arn"])

    @staticmethod
    def _check_alias(alias: object) -> None:
        if not isinstance(alias, str) or not ALIAS_NAME.fullmatch(alias) or alias.startswith("alias/aws/"):
            raise ValidationError("alias must be spelled alias/NAME (letters, digits, / _ -), not alias/aws/...")

    def create_alias(self, alias: str, key_id: str) -> None:
        self._check_alias(alias)
        with self._mutating():
            record = self._resolve(v.validate_key_id(key_id))
            aliases = self._aliases()
            if alias in aliases:
                raise ValidationError(f"alias {alias} already exists")
            aliases[alias] = record["key_id"]
            self._write_json(self.path / "aliases.json", aliases)

    def _set_state(self, key_id: str, state: str, *, allowed_from: tuple[str, ...]) -> KeyInfo:
        with self._mutating():
            record = self._resolve(v.validate_key_id(key_id))
            if record["state"] not in allowed_from:
                raise KMSInvalidStateError(f"{record['arn']} is {record['state']}; cannot make it {state}")
            record["state"] = state
            if state == PENDING_DELETION:
                record["deletion_date"] = (self._clock() + dt.timedelta(days=30)).isoformat()
            else:
                record["deletion_date"] = None
            self._write_json(self._key_path(record["key_id"]), record)
            return self._info(record, self._aliases())

    def disable_key(self, key_id: str) -> KeyInfo:
        return self._set_state(key_id, DISABLED, allowed_from=(ENABLED, DISABLED))

    def enable_key(self, key_id: str) -> KeyInfo:
        return self._set_state(key_id, ENABLED, allowed_from=(ENABLED, DISABLED))

    def schedule_key_deletion(self, key_id: str) -> KeyInfo:
        """Mark the key pending deletion: it can no longer generate or decrypt (KMS semantics).
        Material is kept so `cancel_key_deletion` can restore it, as KMS's waiting period does."""
        return self._set_state(key_id, PENDING_DELETION, allowed_from=(ENABLED, DISABLED))

    def cancel_key_deletion(self, key_id: str) -> KeyInfo:
        return self._set_state(key_id, DISABLED, allowed_from=(PENDING_DELETION,))

    @staticmethod
    def _info(record: dict[str, Any], aliases: dict[str, str]) -> KeyInfo:
        return KeyInfo(
            key_id=record["key_id"],
            arn=record["arn"],
            state=record["state"],
            aliases=tuple(sorted(a for a, k in aliases.items() if k == record["key_id"])),
            created_at=record["created_at"],
            deletion_date=record.get("deletion_date"),
        )

    def list_keys(self) -> list[KeyInfo]:
        if not (self.path / "keys").is_dir():
            return []
        self._check_private(self.path, directory=True)
        aliases = self._aliases()
        out = []
        for p in sorted((self.path / "keys").glob("*.json")):
            record = self._read_json(p)
            if isinstance(record, dict):
                out.append(self._info(record, aliases))
        return sorted(out, key=lambda k: k.created_at)

    def describe_key(self, key_id: str) -> KeyInfo:
        return self._info(self._resolve(v.validate_key_id(key_id)), self._aliases())

    # -- the two KMS operations ----------------------------------------------

    def generate_data_key_without_plaintext(
        self,
        key_id: str,
        *,
        encryption_context: Mapping[str, str] | None = None,
        key_spec: str | None = None,
        number_of_bytes: int | None = None,
        grant_tokens: Sequence[str] | None = None,
    ) -> GeneratedDataKey:
        v.validate_key_id(key_id)
        context = v.validate_encryption_context(encryption_context)
        v.validate_grant_tokens(grant_tokens)
        spec, nbytes = v.validate_key_size(key_spec, number_of_bytes)
        record = self._resolve(key_id)
        self._require_usable(record)
        arn = self._answered_arn("GenerateDataKeyWithoutPlaintext", key_id, record)
        key_uuid = uuid.UUID(record["key_id"]).bytes
        nonce = secrets.token_bytes(_NONCE)
        data_key = bytearray(secrets.token_bytes(v.key_length(spec, nbytes)))
        try:
            sealed = _Material.of(record).aead().encrypt(nonce, bytes(data_key), _context_aad(key_uuid, context))
        finally:
            data_key[:] = bytes(len(data_key))
        return GeneratedDataKey(_BLOB_MAGIC + key_uuid + nonce + sealed, arn)

    def decrypt(
        self,
        ciphertext_blob: bytes,
        *,
        encryption_context: Mapping[str, str] | None = None,
        key_id: str | None = None,
        grant_tokens: Sequence[str] | None = None,
    ) -> DataKey:
        blob = v.validate_ciphertext_blob(ciphertext_blob)
        context = v.validate_encryption_context(encryption_context)
        v.validate_grant_tokens(grant_tokens)
        if key_id is not None:
            v.validate_key_id(key_id)
        if len(blob) < _BLOB_HEADER + _TAG + 1 or not blob.startswith(_BLOB_MAGIC):
            raise InvalidCiphertextError("the ciphertext is not a local keystore blob")
        key_uuid = blob[len(_BLOB_MAGIC) : len(_BLOB_MAGIC) + 16]
        record = self._load_key(str(uuid.UUID(bytes=key_uuid)))
        if record is None:
            if not self.path.exists():
                raise KeystoreError(f"the local keystore {self.path} does not exist")
            raise InvalidCiphertextError("the ciphertext refers to a key that does not exist")
        if key_id is not None and self._resolve(key_id)["key_id"] != record["key_id"]:
            raise IncorrectKeyError("the ciphertext was not encrypted under the key given as KeyId")
        self._require_usable(record)
        arn = self._answered_arn("Decrypt", key_id, record)
        nonce = blob[len(_BLOB_MAGIC) + 16 : _BLOB_HEADER]
        try:
            plaintext = _Material.of(record).aead().decrypt(nonce, blob[_BLOB_HEADER:], _context_aad(key_uuid, context))
        except InvalidTag:
            raise InvalidCiphertextError("the ciphertext or its encryption context is not valid") from None
        try:
            return DataKey(plaintext, arn)
        finally:
            del plaintext
