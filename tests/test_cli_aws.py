"""The `envelope` command in AWS mode: `--kms aws --endpoint-url` pointed at the session's moto_server.

The KMS key and the bucket are made with boto3 in the test; the command
builds its own clients from the options and the fake credentials conftest
puts in the environment (inherited by the subprocess).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import AUTH, EXISTS, KMS, NOT_FOUND, USAGE, Cli, MiB, leftovers


@pytest.fixture
def aws(tmp_path: Path, moto_server_url: str, server_kms_client: Any, server_s3_client: Any) -> dict[str, Any]:
    bucket = f"envelope-cli-{uuid.uuid4().hex[:12]}"
    server_s3_client.create_bucket(Bucket=bucket)
    arn = server_kms_client.create_key(Description="envelope cli")["KeyMetadata"]["Arn"]
    alias = f"alias/cli-{uuid.uuid4().hex[:8]}"
    server_kms_client.create_alias(AliasName=alias, TargetKeyId=arn)
    # Data commands in AWS mode must be told which keys to trust: here through the environment.
    cli = Cli(
        tmp_path,
        "--kms",
        "aws",
        "--region",
        "us-east-1",
        "--endpoint-url",
        moto_server_url,
        env={"ENVELOPE_KEY_IDS": arn},
    )
    return {"cli": cli, "bucket": bucket, "arn": arn, "alias": alias, "s3": server_s3_client}


@pytest.mark.server
def test_aws_mode_against_moto_server(aws: dict[str, Any], tmp_path: Path) -> None:
    cli: Cli = aws["cli"]
    location = f"s3://{aws['bucket']}/tenants/acme"
    header = cli.json("create", location, "--key", aws["alias"], "--context", "tenant=acme")
    [data_key] = header["data_keys"]
    assert (data_key["provider"], data_key["key_id"]) == ("aws-kms", aws["arn"])  # the ARN, not the alias
    assert header["location"] == location
    stored = json.loads(aws["s3"].get_object(Bucket=aws["bucket"], Key="tenants/acme/container.json")["Body"].read())
    assert stored["container_id"] == header["container_id"]
    assert cli.json("describe", location)["container_id"] == header["container_id"]
    assert "done in AWS" in cli("key", "list", code=USAGE).stderr.decode()

    data = os.urandom(2 * MiB + 123)
    (tmp_path / "data.bin").write_bytes(data)
    cli("put", location, "big.bin", "data.bin")
    cli("put", location, "logs/s.txt", "-", stdin=b"from stdin")
    assert cli("get", location, "big.bin").stdout == data
    cli("get", location, "logs/s.txt", "-o", "s.txt")
    assert (tmp_path / "s.txt").read_bytes() == b"from stdin"
    assert cli.json("ls", location) == ["big.bin", "logs/s.txt"]
    assert cli.json("verify", location)["ok"]
    info = cli.json("inspect", location, "big.bin")
    assert info["encrypted_data_keys"] == [{"provider_id": "aws-kms", "provider_info": aws["arn"]}]
    assert [c["location"] for c in cli.json("containers", f"s3://{aws['bucket']}")] == [location]
    cli("put", location, "big.bin", "data.bin", code=EXISTS)
    cli("rm", location, "logs/s.txt")
    cli("get", location, "logs/s.txt", code=NOT_FOUND)

    # Tampering is caught the same way on S3.
    key = "tenants/acme/objects/big.bin"
    body = bytearray(aws["s3"].get_object(Bucket=aws["bucket"], Key=key)["Body"].read())
    body[len(body) // 2] ^= 1
    aws["s3"].put_object(Bucket=aws["bucket"], Key=key, Body=bytes(body))
    cli("get", location, "big.bin", "-o", "big.out", code=AUTH)
    assert not (tmp_path / "big.out").exists() and leftovers(tmp_path) == []

    # A key KMS does not know; a bucket S3 does not know.
    cli("create", f"s3://{aws['bucket']}/tenants/x", "--key", "alias/does-not-exist", code=KMS)
    cli("get", f"s3://{aws['bucket']}/nothing-here", "x", code=NOT_FOUND)
    # A container whose data key is in a local keystore: the error says which --kms to use.
    local = Cli(tmp_path, "--kms", f"local:{tmp_path / 'ks'}", "--endpoint-url", cli.options[-1])
    local("key", "create", "--alias", "alias/l")
    local("create", f"s3://{aws['bucket']}/tenants/local", "--key", "alias/l")
    local("put", f"s3://{aws['bucket']}/tenants/local", "o", "-", stdin=b"local key, S3 storage")
    assert "use --kms local" in cli("get", f"s3://{aws['bucket']}/tenants/local", "o", code=KMS).stderr.decode()
    assert local("get", f"s3://{aws['bucket']}/tenants/local", "o").stdout == b"local key, S3 storage"
