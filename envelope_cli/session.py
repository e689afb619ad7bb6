"""What the global options select: the KMS adapter, the S3 client and the two planes.

This is the one place the command line builds boto3 clients (it is the
convenience layer; the library never builds its own). `--kms aws` uses
`AwsKms.from_config` (envelope retries, botocore's retries off) and an S3
client built with the same region, profile and endpoint; `--kms local[:PATH]`
uses the development keystore. Clients are built lazily, so a command that
never touches S3 or KMS never pays for (or fails on) building them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs

from envelope_cli.exitcodes import CliError, ExitCode

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from controlplane import ControlPlane
    from dataplane import Container, DataPlane
    from dataplane.bulk import ContainerSpec
    from envelope.datakey import DataKey
    from envelope.kms import AwsKms, LocalKms
    from envelope.storage import Store
    from envelope_cli.knobs import Knobs
    from envelope_cli.trust import TrustOptions

# Imports are made where they are needed: `envelope --version` and the local commands must not pay for
# botocore (nor the control plane for a data command); tests/test_cli_help.py checks which are loaded.

__all__ = ["KmsChoice", "Session", "default_keystore", "parse_kms"]

KEYSTORE_ENV = "ENVELOPE_KEYSTORE"


def default_keystore() -> Path:
    """$ENVELOPE_KEYSTORE, else ~/.envelope/keystore."""
    configured = os.environ.get(KEYSTORE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".envelope" / "keystore"


@attrs.frozen
class KmsChoice:
    """`--kms local[:PATH]` or `--kms aws`."""

    kind: str
    keystore: Path | None = None


def parse_kms(text: str) -> KmsChoice:
    """Parse a --kms value; CliError(USAGE) when it is neither local[:PATH] nor aws."""
    if text == "aws":
        return KmsChoice("aws")
    if text == "local":
        return KmsChoice("local", default_keystore())
    if text.startswith("local:") and len(text) > len("local:"):
        return KmsChoice("local", Path(text[len("local:") :]).expanduser())
    raise CliError(f"--kms must be local, local:PATH or aws, not {text!r}", ExitCode.USAGE)


def _check_region(region: str | None) -> str | None:
    """--region as botocore will take it; a usage error now rather than an internal error later."""
    if region is None:
        return None
    from botocore.exceptions import InvalidRegionError
    from botocore.utils import validate_region_name

    try:
        validate_region_name(region)
    except InvalidRegionError:
        raise CliError(f"--region {region!r} is not a region name (e.g. us-east-1)", ExitCode.USAGE) from None
    return region


def _check_endpoint_url(url: str | None) -> str | None:
    """--endpoint-url: an http(s) URL with a host, as botocore requires (it would raise a bare ValueError)."""
    if url is None:
        return None
    from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url

    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number in range
        valid = (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and bool(is_valid_endpoint_url(url) or is_valid_ipv6_endpoint_url(url))
        )
    except ValueError:  # an unbalanced [ in the host, a bad port
        valid = False
    if not valid:
        raise CliError(f"--endpoint-url {url!r} is not an http:// or https:// URL with a host", ExitCode.USAGE)
    return url


class _NoDecrypt:
    """A decryptor for commands that must not touch any key (ls, rm, inspect).

    Listing, deleting and reading headers need no data key; handing the data
    plane this instead of the real KMS makes "no KMS call" structural.
    """

    def decrypt(self, ciphertext_blob: bytes, **_: Any) -> DataKey:
        raise AssertionError("this command must not decrypt anything")


class _NoGenerate:
    """A key generator for control-plane commands that must not touch any key (describe, containers):
    handing the control plane this instead of a KMS makes "no KMS call" structural, and spares them
    loading any KMS adapter."""

    provider_id = "local"

    def generate_data_key_without_plaintext(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("this command must not generate a data key")


class Session:
    """The KMS, S3 client and planes the global options ask for, built on first use."""

    def __init__(
        self,
        kms: KmsChoice,
        *,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        grant_tokens: Sequence[str] = (),
        trust: TrustOptions | None = None,
    ) -> None:
        self.choice = kms
        self.trust = trust
        self.region = _check_region(region)
        self.profile = profile
        self.endpoint_url = _check_endpoint_url(endpoint_url)
        self.grant_tokens = tuple(grant_tokens)
        self.allow_unbound = False
        """--allow-unbound: read commands also accept unbound messages (docs/interop.md)."""
        self.knobs: Knobs | None = None
        """--threads, --frame-length, --upload-concurrency (or their variables), judged; None: the defaults."""
        self._kms: AwsKms | LocalKms | None = None
        self._s3: S3Client | None = None

    # -- KMS ---------------------------------------------------------------------------

    def kms(self) -> AwsKms | LocalKms:
        if self._kms is None:
            if self.choice.kind == "aws":
                from envelope.kms import AwsKms

                self._kms = AwsKms.from_config(
                    region_name=self.region, endpoint_url=self.endpoint_url, profile_name=self.profile
                )
            else:
                from envelope.kms import LocalKms

                assert self.choice.keystore is not None
                self._kms = LocalKms(self.choice.keystore)
        return self._kms

    def local_kms(self) -> LocalKms:
        """The local keystore, for `envelope key ...`; a usage error with --kms aws."""
        if self.choice.kind == "aws":
            raise CliError(
                "key administration for --kms aws is done in AWS itself (console, `aws kms create-key`, "
                "`aws kms disable-key`, infrastructure as code); `envelope key` manages the local "
                "development keystore (--kms local[:PATH])",
                ExitCode.USAGE,
            )
        from envelope.kms import LocalKms

        kms = self.kms()
        assert isinstance(kms, LocalKms)
        return kms

    # -- S3 ----------------------------------------------------------------------------

    def s3_client(self) -> S3Client:
        if self._s3 is None:
            import boto3
            from botocore.config import Config

            session = boto3.Session(profile_name=self.profile, region_name=self.region)
            self._s3 = session.client("s3", endpoint_url=self.endpoint_url, config=Config(retries={"mode": "standard"}))
        return self._s3

    def store(self, location: str) -> Store:
        """The store for a location; builds the S3 client only for s3:// locations."""
        from envelope.storage import open_store

        if not location.startswith("s3://"):
            return open_store(location)
        concurrency = self.knobs.upload_concurrency if self.knobs is not None else None
        if concurrency is None:
            return open_store(location, s3_client=self.s3_client())
        from envelope.storage import S3Store, parse_location

        parsed = parse_location(location)
        return S3Store(self.s3_client(), parsed.bucket, parsed.prefix, upload_concurrency=concurrency)

    # -- planes ------------------------------------------------------------------------

    # Planes are always handed a Store (see `store`), so they never need the S3 client themselves.

    def control_plane(self) -> ControlPlane:
        from controlplane import ControlPlane

        return ControlPlane(self.kms())

    def browse_control_plane(self) -> ControlPlane:
        """A control plane for reading headers only (describe, containers): no KMS adapter is built."""
        from controlplane import ControlPlane

        return ControlPlane(_NoGenerate())

    def _trust(self) -> TrustOptions:
        if self.trust is None:
            raise AssertionError("a data command without trust options")
        return self.trust

    def _data_plane(self, kms: Any) -> DataPlane:
        from dataplane import DataPlane

        return DataPlane(
            kms,
            grant_tokens=self.grant_tokens or None,
            allow_unbound=self.allow_unbound,
            **(self.knobs.plane_options() if self.knobs is not None else {}),
            **self._trust().plane_options(),
        )

    def container_spec(self, location: str) -> ContainerSpec:
        """The picklable configuration of this command's container, for work on other processes (--dask)."""
        from dataplane.bulk import ContainerSpec

        trust = self._trust()
        kms = "aws" if self.choice.kind == "aws" else f"local:{self.local_kms().path}"
        return ContainerSpec(
            location=self.store(location).url,
            kms=kms,
            region=self.region,
            profile=self.profile,
            endpoint_url=self.endpoint_url,
            key_ids=trust.key_ids or (),
            discovery=trust.discovery,
            discovery_accounts=trust.discovery_accounts or (),
            discovery_partition=trust.discovery_partition,
            expect_context=dict(trust.expect_context),
            container_id=trust.expect_container_id,
            allow_unbound=self.allow_unbound,
            grant_tokens=self.grant_tokens,
        )

    def open_container(self, location: str) -> Container:
        """Open a container with its data key (one KMS Decrypt), for put/get/verify."""
        from envelope.errors import AuthenticationError, FormatError, KmsError

        plane = self._data_plane(self.kms())
        store = self.store(location)
        try:
            return plane.open(store, **self._trust().open_options())
        except AuthenticationError as e:
            raise CliError(f"{e}; {self._trust().refusal_hint()}", ExitCode.AUTHENTICATION) from e
        # The data plane refuses a header whose provider is not its KMS's (FormatError) before any
        # KMS call; from the command line that is almost always a wrong --kms, as is a KMS failure.
        except (KmsError, FormatError) as e:
            hint = self._mismatch_hint(store)
            if hint:
                raise CliError(f"{e}; {hint}", ExitCode.KMS) from e
            raise

    def browse_container(self, location: str) -> Container:
        """Open a container without its data key and without any KMS call, for ls/rm/inspect.

        The trust options apply all the same: a header they refuse is refused here too."""
        from envelope.errors import AuthenticationError

        plane = self._data_plane(_NoDecrypt())
        try:
            return plane.open(self.store(location), fetch_key=False, **self._trust().open_options())
        except AuthenticationError as e:
            raise CliError(f"{e}; {self._trust().refusal_hint()}", ExitCode.AUTHENTICATION) from e

    def _mismatch_hint(self, store: Store) -> str | None:
        """Why a KMS failure may be a wrong --kms, when the header says who holds the data key."""
        from envelope.containers import read_container_header

        try:
            provider = read_container_header(store).data_keys[0].provider
        except Exception:  # noqa: BLE001 - only a hint; the KMS error is what gets reported
            return None
        if provider == "local" and self.choice.kind == "aws":
            return "this container's data key is held by a local keystore: use --kms local[:PATH]"
        if provider == "aws-kms" and self.choice.kind == "local":
            return "this container's data key is held by AWS KMS: use --kms aws"
        if provider == "local" and self.choice.keystore is not None and not self.choice.keystore.exists():
            return f"the local keystore {self.choice.keystore} does not exist (--kms local:PATH or ${KEYSTORE_ENV})"
        return None
