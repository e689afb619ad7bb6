"""What the data commands trust (DESIGN §11), against the session's moto_server (KMS and S3).

A storage attacker replaces an S3 container's `container.json` with a genuine header: another tenant's,
or one whose data key sits under a second KMS key (theirs). Told which key and context to expect, every
data command refuses with exit code 3 and says what did not match, and no Decrypt ever reaches KMS: each
command runs in-process with its KMS client's requests recorded (tests/support/faults.KmsFaults).
"""

from __future__ import annotations

import io
import json
import sys
import uuid
from typing import Any

import boto3
import pytest

from envelope.kms import AwsKms
from envelope_cli.main import main
from tests.conftest import REGION
from tests.support.faults import KmsFaults

OK, USAGE, AUTH = 0, 2, 3
pytestmark = pytest.mark.server


class AwsCli:
    """`envelope --kms aws` in-process against moto_server; every KMS request it sends is recorded."""

    def __init__(self, url: str, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
        self.url, self.capsys, self.monkeypatch = url, capsys, monkeypatch
        self.kms_requests: list[str] = []

        def recorded(**kwargs: Any) -> AwsKms:
            client = boto3.client("kms", region_name=REGION, endpoint_url=kwargs["endpoint_url"])
            recorder = KmsFaults(client)
            self.kms_requests = recorder.sent  # the list the recorder appends to
            return AwsKms(client)

        monkeypatch.setattr(AwsKms, "from_config", staticmethod(recorded))
        monkeypatch.delenv("ENVELOPE_KEY_IDS", raising=False)

    def __call__(self, *argv: str, code: int = OK) -> str:
        self.kms_requests = []
        self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"plaintext from stdin")))
        try:
            got = main(["--kms", "aws", "--region", REGION, "--endpoint-url", self.url, "-q", *argv])
        except SystemExit as e:
            got = int(e.code or 0)
        out, err = self.capsys.readouterr()
        assert got == code, (argv, got, err)
        return str(err if code else out)

    @property
    def decrypts(self) -> int:
        return self.kms_requests.count("Decrypt")


@pytest.fixture
def world(
    moto_server_url: str,
    server_kms_client: Any,
    server_s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> dict[str, Any]:
    bucket = f"envelope-trust-{uuid.uuid4().hex[:12]}"
    server_s3_client.create_bucket(Bucket=bucket)
    ours = server_kms_client.create_key(Description="tenants")["KeyMetadata"]["Arn"]
    theirs = server_kms_client.create_key(Description="attacker")["KeyMetadata"]["Arn"]
    cli = AwsCli(moto_server_url, monkeypatch, capsys)
    root = f"s3://{bucket}"
    ids = {}
    for tenant, key in (("acme", ours), ("globex", ours), ("evil", theirs)):
        ids[tenant] = json.loads(
            cli("--json", "create", f"{root}/{tenant}", "--key", key, "--context", f"tenant={tenant}")
        )["container_id"]
    for tenant in ("acme", "globex"):
        cli("put", f"{root}/{tenant}", "doc", "-", "--key", ours)
    return {
        "cli": cli,
        "s3": server_s3_client,
        "bucket": bucket,
        "root": root,
        "ours": ours,
        "theirs": theirs,
        "ids": ids,
    }


def swap_header(world: dict[str, Any], source: str, target: str) -> None:
    """The storage-only attack: copy one genuine container.json over another."""
    s3, bucket = world["s3"], world["bucket"]
    body = s3.get_object(Bucket=bucket, Key=f"{source}/container.json")["Body"].read()
    s3.put_object(Bucket=bucket, Key=f"{target}/container.json", Body=body)


def test_aws_mode_needs_to_be_told_what_to_trust(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    cli, acme = world["cli"], f"{world['root']}/acme"
    for command in (["get", acme, "doc"], ["put", acme, "n", "-"], ["ls", acme], ["rm", acme, "doc"]):
        err = cli(*command, code=USAGE)
        assert "--key" in err and "ENVELOPE_KEY_IDS" in err and "--discovery" in err and "control" in err
        assert cli.kms_requests == []
    for command in (["inspect", acme], ["verify", acme]):
        cli(*command, code=USAGE)
    # An alias cannot be matched against the ARN in a header: refused with a pointer to the ARN.
    assert "key ARN" in cli("ls", acme, "--key", "alias/x", code=USAGE)
    cli("ls", acme, "--key", world["ours"], "--discovery", code=USAGE)
    cli("ls", acme, "--discovery-account", "123456789012", code=USAGE)  # without --discovery
    cli("ls", acme, "--discovery", "--discovery-account", "12", code=USAGE)
    cli("ls", acme, "--key", world["ours"], "--expect-context", "no-equals", code=USAGE)
    # Each way of saying it works: --key, the environment, --discovery.
    assert cli("get", acme, "doc", "--key", world["ours"]) == "plaintext from stdin"
    assert cli("ls", acme, "--discovery").split() == ["doc"]
    monkeypatch.setenv("ENVELOPE_KEY_IDS", f"{world['theirs']}, {world['ours']}")
    assert cli("ls", acme).split() == ["doc"]
    monkeypatch.setenv("ENVELOPE_KEY_IDS", f"{world['ours']},,")
    cli("ls", acme, code=USAGE)


def test_another_tenants_header_is_refused_without_a_decrypt(world: dict[str, Any]) -> None:
    cli, root, ours = world["cli"], world["root"], world["ours"]
    globex = f"{root}/globex"
    swap_header(world, "acme", "globex")  # same key, acme's data key and context
    pin = ["--key", ours, "--expect-context", "tenant=globex"]
    for command in (["get", globex, "doc"], ["put", globex, "new", "-"], ["verify", globex], ["ls", globex]):
        err = cli(*command, *pin, code=AUTH)
        assert "encryption context does not match the expected 'tenant'" in err and "--expect-context" in err
        assert cli.decrypts == 0
    err = cli("get", globex, "doc", "--key", ours, "--expect-container-id", world["ids"]["globex"], code=AUTH)
    assert "container id is not the expected one" in err and cli.decrypts == 0
    # The genuine container, pinned the same way, opens (one Decrypt: the count sees KMS calls).
    cli("get", f"{root}/acme", "doc", "--key", ours, "--expect-context", "tenant=acme")
    assert cli.decrypts == 1
    cli("ls", f"{root}/acme", "--key", ours, "--expect-container-id", world["ids"]["acme"])


def test_a_header_repointed_to_another_kms_key_is_refused_without_a_decrypt(world: dict[str, Any]) -> None:
    cli, root, ours = world["cli"], world["root"], world["ours"]
    acme = f"{root}/acme"
    swap_header(world, "evil", "acme")  # the attacker's key: a put would encrypt for them
    for command in (["put", acme, "secret", "-"], ["get", acme, "doc"], ["verify", acme], ["inspect", acme]):
        err = cli(*command, "--key", ours, code=AUTH)
        assert f"KMS key {world['theirs']} is not one of" in err and "--key" in err
        assert cli.decrypts == 0
    # A discovery filter on another account refuses it too.
    err = cli("put", acme, "secret", "-", "--discovery", "--discovery-account", "111122223333", code=AUTH)
    assert "outside this DataPlane's discovery filter" in err and cli.decrypts == 0
    # What the flags prevent: with plain --discovery the swapped header is used, its key decrypted.
    cli("put", acme, "secret", "-", "--discovery")
    assert cli.decrypts == 1
