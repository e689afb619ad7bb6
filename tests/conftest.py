"""Shared test harness: moto in-process and on a loopback moto_server, fixtures for both planes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from hypothesis import HealthCheck, settings

from tests.support.servers import moto_server

REGION = "us-east-1"

# No test may ever reach real AWS: fake credentials, no config files, loopback only.
for _k, _v in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}.items():
    os.environ[_k] = _v
os.environ.pop("AWS_PROFILE", None)
for _k in list(os.environ):
    if _k.startswith("AWS_ENDPOINT_URL"):
        del os.environ[_k]

settings.register_profile(
    "ci", deadline=None, derandomize=True, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

FAST_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30)


@pytest.fixture
def moto_aws() -> Iterator[None]:
    """In-process moto for KMS and S3 (fast; same process only)."""
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def kms_client(moto_aws: None) -> Any:
    return boto3.client("kms", region_name=REGION, config=FAST_RETRIES)


@pytest.fixture
def s3_client(moto_aws: None) -> Any:
    return boto3.client("s3", region_name=REGION)


@pytest.fixture
def kms_key_arn(kms_client: Any) -> str:
    arn: str = kms_client.create_key(Description="envelope tests")["KeyMetadata"]["Arn"]
    kms_client.create_alias(AliasName="alias/test", TargetKeyId=arn)
    return arn


@pytest.fixture
def bucket(s3_client: Any) -> str:
    name = f"envelope-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def moto_server_url() -> Iterator[str]:
    """A moto_server on 127.0.0.1 (free port), shared by the session, stopped at its end."""
    with moto_server() as url:
        yield url


@pytest.fixture
def server_s3_client(moto_server_url: str) -> Any:
    return boto3.client("s3", region_name=REGION, endpoint_url=moto_server_url)


@pytest.fixture
def server_kms_client(moto_server_url: str) -> Any:
    return boto3.client("kms", region_name=REGION, endpoint_url=moto_server_url, config=FAST_RETRIES)


@pytest.fixture
def server_bucket(server_s3_client: Any) -> str:
    name = f"envelope-{uuid.uuid4().hex[:12]}"
    server_s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def local_kms(tmp_path: Path) -> Any:
    from envelope.kms import LocalKms

    return LocalKms(tmp_path / "keystore")
