"""The trust boundary: the control plane calls GenerateDataKeyWithoutPlaintext and nothing else.

Checked four ways: every KMS request of a full workflow is recorded; a KMS
object that refuses every other attribute still works; importing the
control plane loads nothing that can decrypt; and on a moto_server that
enforces IAM, a principal allowed only GenerateDataKeyWithoutPlaintext
(plus the S3 calls it needs) runs the whole workflow and is denied Decrypt.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

import controlplane
from controlplane import ContainerRequest, ControlPlane
from envelope.errors import AccessDeniedError, ContainerExistsError, ContainerNotFoundError
from envelope.kms import AwsKms, LocalKms
from tests.conftest import FAST_RETRIES, REGION
from tests.support.faults import HttpRecorder, operation_of
from tests.support.servers import moto_server

GENERATE = "GenerateDataKeyWithoutPlaintext"


def full_workflow(cp: ControlPlane, root: str, key_id: str) -> None:
    """Everything the control plane can do, including its failure paths."""
    header = cp.create_container(f"{root}/a", key_id, encryption_context={"tenant": "a"}, labels={"k": "v"})
    cp.create_container(f"{root}/b/c", key_id, number_of_bytes=32)
    with pytest.raises(ContainerExistsError):
        cp.create_container(f"{root}/a", key_id)
    assert cp.describe_container(f"{root}/a") == header
    with pytest.raises(ContainerNotFoundError):
        cp.describe_container(f"{root}/missing")
    results = cp.create_containers(
        [ContainerRequest(location=f"{root}/batch{i}", key_id=key_id) for i in range(3)]
        + [ContainerRequest(location=f"{root}/a", key_id=key_id)]
    )
    assert [r.ok for r in results] == [True, True, True, False]
    listed = list(cp.list_containers(root))
    assert len(listed) == 5
    # The key lifecycle is the control plane's too: rotation is one more GenerateDataKeyWithoutPlaintext.
    assert cp.rotate_container(f"{root}/a").generation == 2
    assert [g.generation for g in cp.list_generations(f"{root}/a")] == [1, 2]
    assert all(r.ok for r in listed)


class KmsWire:
    """Every KMS request as sent (operation and JSON body) and every parsed response, from botocore's events."""

    def __init__(self, client: Any) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.responses: list[dict[str, Any]] = []
        client.meta.events.register_first("before-send.kms", self._sent)
        client.meta.events.register("after-call.kms", self._answered)

    def _sent(self, request: Any, **_: Any) -> None:
        body = request.body
        text = body.decode() if isinstance(body, bytes) else str(body or "{}")
        self.requests.append((operation_of(request), json.loads(text or "{}")))

    def _answered(self, parsed: dict[str, Any], **_: Any) -> None:
        self.responses.append(parsed)


def test_a_full_workflow_sends_only_generate_data_key_without_plaintext(
    kms_client: Any, kms_key_arn: str, s3_client: Any, bucket: str
) -> None:
    wire = KmsWire(kms_client)
    kms_http = HttpRecorder(kms_client)
    s3_http = HttpRecorder(s3_client)
    full_workflow(ControlPlane(AwsKms(kms_client), s3_client), f"s3://{bucket}/tenants", "alias/test")

    # One request per container made and one for the rotation, none for the refused ones; each
    # exactly the operation, with exactly the parameters it should carry.
    assert [op for op, _ in wire.requests] == [GENERATE] * 6
    for _, body in wire.requests:
        assert set(body) <= {"KeyId", "EncryptionContext", "KeySpec", "NumberOfBytes", "GrantTokens"}, body
    assert [body["KeyId"] for _, body in wire.requests] == ["alias/test"] * 5 + [
        kms_key_arn
    ]  # rotation: the header's key
    assert wire.requests[-1][1]["EncryptionContext"]["envelope:generation"] == "2"
    assert len(kms_http.requests) == 6
    assert all(r.startswith("POST ") for r in kms_http.requests)
    # Nothing that carries a plaintext key ever came back.
    assert len(wire.responses) == 6
    assert all("Plaintext" not in response for response in wire.responses)
    assert all(set(r) <= {"CiphertextBlob", "KeyId", "KeyMaterialId", "ResponseMetadata"} for r in wire.responses)
    # The S3 client touched only the bucket.
    assert s3_http.requests and all(f"/{bucket}" in r or f"{bucket}." in r for r in s3_http.requests)


def test_the_wire_check_sees_a_forbidden_operation(kms_client: Any, kms_key_arn: str) -> None:
    """The recorder above can fail: a Decrypt or GenerateDataKey sent by anyone shows up in it."""
    wire = KmsWire(kms_client)
    blob = kms_client.generate_data_key(KeyId=kms_key_arn, KeySpec="AES_256")["CiphertextBlob"]
    kms_client.decrypt(CiphertextBlob=blob)
    assert [op for op, _ in wire.requests] == ["GenerateDataKey", "Decrypt"]
    assert all("Plaintext" in r for r in wire.responses)


class GenerateOnly:
    """A KMS object with exactly the control plane's surface; touching anything else fails the test."""

    ALLOWED = frozenset({"generate_data_key_without_plaintext", "provider_id"})

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "touched", set())

    def __getattribute__(self, name: str) -> Any:
        if name == "touched":
            return object.__getattribute__(self, "touched")
        object.__getattribute__(self, "touched").add(name)
        if name not in GenerateOnly.ALLOWED:
            # Not an AttributeError: nothing may quietly fall back when it is refused.
            raise AssertionError(f"the control plane reached for kms.{name}")
        return getattr(object.__getattribute__(self, "_inner"), name)


def test_a_kms_object_offering_only_generate_is_enough(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "keystore")
    kms.create_key(alias="alias/only")
    narrow = GenerateOnly(kms)
    full_workflow(ControlPlane(narrow), str(tmp_path / "containers"), "alias/only")
    assert narrow.touched <= GenerateOnly.ALLOWED


FORBIDDEN_NAMES = frozenset({"decrypt", "encrypt", "re_encrypt", "generate_data_key", "generate_data_key_pair"})
FORBIDDEN_OPERATIONS = re.compile(r"\b(Decrypt|Encrypt|ReEncrypt|GenerateDataKey|GenerateDataKeyPair)\b")


def _forbidden_uses(source: str) -> list[str]:
    """Names, attributes and strings in `source` that reach for an operation with a plaintext key."""
    found = []
    for node in ast.walk(ast.parse(source)):
        name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
        if name is not None and (
            name.lower() in FORBIDDEN_NAMES
            or ("plaintext" in name.lower() and name != "generate_data_key_without_plaintext")
        ):
            found.append(f"{node.lineno}: {name}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and FORBIDDEN_OPERATIONS.search(node.value):
            found.append(f"{node.lineno}: {node.value[:60]!r}")
    return sorted(found)


def test_the_control_plane_has_no_decrypt_anything() -> None:
    assert [name for name in dir(ControlPlane) if "decrypt" in name.lower() or "plaintext" in name.lower()] == []
    # Nor does its code name one: no attribute, variable or string that reaches for Decrypt & co.
    package = Path(controlplane.__file__).parent
    found = {str(f.name): _forbidden_uses(f.read_text(encoding="utf-8")) for f in sorted(package.glob("*.py"))}
    assert {f: uses for f, uses in found.items() if uses} == {}


def test_the_source_scan_finds_a_decrypt_call() -> None:
    planted = "def open(kms, blob):\n    return kms.decrypt(blob)\nOP = 'kms:Decrypt'\n"
    assert _forbidden_uses(planted) == ["2: decrypt", "3: 'kms:Decrypt'"]
    assert _forbidden_uses("kms.generate_data_key_without_plaintext(k)\n") == []


def test_importing_the_control_plane_loads_nothing_that_can_decrypt() -> None:
    code = (
        "import sys, controlplane\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('cryptography', 'dataplane', 'aws_encryption_sdk', 'tink', 'envelope_cli') or m == 'envelope.kms' or m.startswith('envelope.kms.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


# --------------------------------------------------------------------------- IAM-enforcing moto_server

ADMIN = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# Exactly the requests `iam_world` makes as the admin before moto starts enforcing IAM.
SETUP_ACTIONS = 6
CONTROL_PLANE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["kms:GenerateDataKeyWithoutPlaintext", "s3:PutObject", "s3:GetObject", "s3:ListBucket"],
            "Resource": "*",
        }
    ],
}


def _client(service: Any, url: str, credentials: dict[str, str]) -> Any:
    config = FAST_RETRIES if service == "kms" else None
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=url,
        config=config,
        aws_access_key_id=credentials["aws_access_key_id"],
        aws_secret_access_key=credentials["aws_secret_access_key"],
    )


@pytest.fixture(scope="module")
def iam_world() -> Iterator[dict[str, Any]]:
    """A separate moto_server that enforces IAM after the setup below, and a control-plane user."""
    with moto_server(env={"INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_ACTIONS)}) as url:
        key_arn = _client("kms", url, ADMIN).create_key(Description="iam test")["KeyMetadata"]["Arn"]  # 1
        bucket = f"envelope-iam-{uuid.uuid4().hex[:8]}"
        _client("s3", url, ADMIN).create_bucket(Bucket=bucket)  # 2
        iam = _client("iam", url, ADMIN)
        iam.create_user(UserName="provisioner")  # 3
        policy_arn = iam.create_policy(  # 4
            PolicyName="control-plane", PolicyDocument=json.dumps(CONTROL_PLANE_POLICY)
        )["Policy"]["Arn"]
        iam.attach_user_policy(UserName="provisioner", PolicyArn=policy_arn)  # 5
        key = iam.create_access_key(UserName="provisioner")["AccessKey"]  # 6
        user = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
        yield {"url": url, "key_arn": key_arn, "bucket": bucket, "user": user}


@pytest.mark.server
def test_iam_is_really_enforced_after_setup(iam_world: dict[str, Any]) -> None:
    with pytest.raises(ClientError):
        _client("kms", iam_world["url"], ADMIN).list_keys()  # the setup credentials are unknown to IAM


@pytest.mark.server
def test_a_principal_allowed_only_generate_runs_the_control_plane_and_cannot_decrypt(
    iam_world: dict[str, Any],
) -> None:
    url, user = iam_world["url"], iam_world["user"]
    kms_client = _client("kms", url, user)
    s3_client = _client("s3", url, user)
    kms = AwsKms(kms_client)
    cp = ControlPlane(kms, s3_client)
    root = f"s3://{iam_world['bucket']}/{uuid.uuid4().hex[:8]}"

    full_workflow(cp, root, iam_world["key_arn"])

    header = cp.describe_container(f"{root}/a")
    (edk,) = header.data_keys
    with pytest.raises(AccessDeniedError):
        kms.decrypt(edk.ciphertext, encryption_context=dict(header.encryption_context), key_id=edk.key_id)
    # Nor may it ask KMS for a data key that comes with its plaintext.
    with pytest.raises(ClientError) as info:
        kms_client.generate_data_key(KeyId=iam_world["key_arn"], KeySpec="AES_256")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
