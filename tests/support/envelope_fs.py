"""Containers for the fsspec tests: a local one (LocalKms) and an S3 one (AWS KMS and S3 on moto_server).

Each returns the storage options a data tool would be given. Both are built
through the real control plane; the S3 one uses `kms="aws"` with a strict
key list, the way a production reader is configured.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3

from controlplane import ControlPlane
from envelope.kms import AwsKms, LocalKms
from tests.conftest import FAST_RETRIES, REGION


def local_container(root: Path, name: str = "c", *, context: dict[str, str] | None = None) -> dict[str, Any]:
    keystore = root / "keystore"
    kms = LocalKms(keystore)
    if not kms.list_keys():
        kms.create_key(alias="alias/fs")
    ControlPlane(kms).create_container(root / name, key_id="alias/fs", encryption_context=context)
    return {"container": str(root / name), "kms": f"local:{keystore}"}


def s3_container(endpoint_url: str, *, context: dict[str, str] | None = None) -> dict[str, Any]:
    kms_client = boto3.client("kms", region_name=REGION, endpoint_url=endpoint_url, config=FAST_RETRIES)
    s3_client = boto3.client("s3", region_name=REGION, endpoint_url=endpoint_url)
    bucket = f"envelope-fs-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    arn: str = kms_client.create_key(Description="envelope fsspec tests")["KeyMetadata"]["Arn"]
    location = f"s3://{bucket}/tenants/acme"
    ControlPlane(AwsKms(kms_client), s3_client).create_container(location, key_id=arn, encryption_context=context)
    return {
        "container": location,
        "kms": "aws",
        "key_ids": [arn],
        "endpoint_url": endpoint_url,
        "region": REGION,
    }


def raw_s3_client(endpoint_url: str) -> Any:
    return boto3.client("s3", region_name=REGION, endpoint_url=endpoint_url)


def object_path(options: dict[str, Any], name: str) -> str:
    """Where the stored message of `name` lives: a file path, or s3://bucket/key."""
    return f"{options['container'].rstrip('/')}/objects/{name}"


def read_stored(options: dict[str, Any], name: str) -> bytes:
    where = object_path(options, name)
    if where.startswith("s3://"):
        bucket, _, key = where[len("s3://") :].partition("/")
        body: bytes = raw_s3_client(options["endpoint_url"]).get_object(Bucket=bucket, Key=key)["Body"].read()
        return body
    return Path(where).read_bytes()


def write_stored(options: dict[str, Any], name: str, data: bytes) -> None:
    """Replace the stored message bytes of `name` behind the data plane's back (an attacker's write)."""
    where = object_path(options, name)
    if where.startswith("s3://"):
        bucket, _, key = where[len("s3://") :].partition("/")
        raw_s3_client(options["endpoint_url"]).put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = Path(where)
    path.chmod(0o600)
    path.write_bytes(data)


def flip(options: dict[str, Any], name: str, offset: int) -> None:
    data = bytearray(read_stored(options, name))
    data[offset] ^= 0x01
    write_stored(options, name, bytes(data))
