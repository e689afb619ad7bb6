"""`--allow-unbound` and the message for an unbound message: the command line tells "another SDK wrote this
with our key and context" apart from "corrupt or tampered" by the object's public header, never by weakening
the library's single refusal.

The AWS Encryption SDK writes through AWS KMS, so these run against the session's moto_server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REGION
from tests.support.cli_run import Run

OK, AUTH = 0, 3


def esdk_message(kms_client: Any, arn: str, data: bytes, context: dict[str, str]) -> bytes:
    import aws_encryption_sdk
    from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy
    from aws_encryption_sdk.key_providers.kms import KMSMasterKey, KMSMasterKeyConfig

    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    ciphertext, _ = client.encrypt(
        source=data,
        key_provider=KMSMasterKey(config=KMSMasterKeyConfig(key_id=arn, client=kms_client)),
        encryption_context=context,
        algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
        frame_length=4096,
    )
    return bytes(ciphertext)


@pytest.mark.server
def test_an_unbound_message_is_named_as_such_and_read_with_allow_unbound(
    moto_server_url: str,
    server_kms_client: Any,
    server_s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    bucket = f"envelope-interop-{uuid.uuid4().hex[:12]}"
    server_s3_client.create_bucket(Bucket=bucket)
    arn = server_kms_client.create_key()["KeyMetadata"]["Arn"]
    aws = Run(["--kms", "aws", "--region", REGION, "--endpoint-url", moto_server_url], monkeypatch, capsys)

    def run(*argv: str, code: int = OK) -> tuple[str, str]:
        trusted = ("--key", arn) if argv[0] in ("get", "verify", "cp") else ()
        return aws(*argv, *trusted, code=code)

    c, c2 = f"s3://{bucket}/t/acme", f"s3://{bucket}/t/copy"
    run("create", c, "--key", arn, "--context", "tenant=acme")
    run("create", c2, "--key", arn, "--context", "tenant=acme")
    context = json.loads(run("--json", "describe", c)[0])["encryption_context"]
    data = os.urandom(10_000)
    server_s3_client.put_object(
        Bucket=bucket, Key="t/acme/objects/from-esdk", Body=esdk_message(server_kms_client, arn, data, context)
    )

    _, err = run("get", c, "from-esdk", "-o", "out.bin", code=AUTH)
    assert "not written into this container" in err and "use --allow-unbound to read it" in err
    assert "corrupt" not in err and not (tmp_path / "out.bin").exists()
    out, _ = run("verify", c, "from-esdk", code=AUTH)
    assert "FAILED  from-esdk" in out and "use --allow-unbound to read it" in out

    run("get", c, "from-esdk", "-o", "out.bin", "--allow-unbound")
    assert (tmp_path / "out.bin").read_bytes() == data
    run("verify", c, "from-esdk", "--allow-unbound")
    # cp re-encrypts it into a container where it is bound: no opt-in needed to read the copy.
    run("cp", c, "from-esdk", c2, "--allow-unbound")
    run("get", c2, "from-esdk", "-o", "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == data

    # Same container id and key, another context: refused even with the opt-in, and the message says why.
    other = {**context, "tenant": "globex"}
    server_s3_client.put_object(
        Bucket=bucket, Key="t/acme/objects/other", Body=esdk_message(server_kms_client, arn, b"x", other)
    )
    _, err = run("get", c, "other", "-o", "other.bin", "--allow-unbound", code=AUTH)
    assert "not readable with --allow-unbound" in err
    # Another application's context entirely: not ours at all.
    server_s3_client.put_object(
        Bucket=bucket, Key="t/acme/objects/app", Body=esdk_message(server_kms_client, arn, b"x", {"app": "x"})
    )
    _, err = run("get", c, "app", "-o", "app.bin", code=AUTH)
    assert "another container's or another application's" in err and "--allow-unbound to read" not in err


def test_a_tampered_object_of_ours_keeps_the_plain_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    run = Run(["--kms", f"local:{tmp_path / 'ks'}"], monkeypatch, capsys)
    run("key", "create", "--alias", "alias/k")
    run("create", "c", "--key", "alias/k")
    run("create", "d", "--key", "alias/k")
    (tmp_path / "f").write_bytes(b"data" * 100)
    run("put", "c", "x", "f")
    run("put", "c", "y", "f")
    run("put", "d", "z", "f")
    # Moved within the container: bound by its header, so the refusal stays the library's.
    (tmp_path / "c/objects/y").write_bytes((tmp_path / "c/objects/x").read_bytes())
    _, err = run("get", "c", "y", "-o", "y.out", code=AUTH)
    assert "not written into this container" not in err
    # Copied from another container: named as another container's message.
    (tmp_path / "c/objects/z").write_bytes((tmp_path / "d/objects/z").read_bytes())
    _, err = run("get", "c", "z", "-o", "z.out", code=AUTH)
    assert "another container's" in err


def _esdk_cli() -> str | None:
    """The AWS Encryption SDK CLI, if installed (it pins an older aws-encryption-sdk, so it is not a test
    dependency: point ENVELOPE_TEST_ESDK_CLI at one installed in its own environment)."""
    return os.environ.get("ENVELOPE_TEST_ESDK_CLI") or shutil.which("aws-encryption-cli")


@pytest.mark.server
def test_the_esdk_cli_recipe_of_docs_interop_decrypts_our_object(
    moto_server_url: str,
    server_kms_client: Any,
    server_s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    cli = _esdk_cli()
    if cli is None:
        pytest.skip("aws-encryption-cli is not installed (set ENVELOPE_TEST_ESDK_CLI)")
    monkeypatch.chdir(tmp_path)
    bucket = f"envelope-esdkcli-{uuid.uuid4().hex[:12]}"
    server_s3_client.create_bucket(Bucket=bucket)
    arn = server_kms_client.create_key()["KeyMetadata"]["Arn"]
    run = Run(["--kms", "aws", "--region", REGION, "--endpoint-url", moto_server_url], monkeypatch, capsys)
    c = f"s3://{bucket}/tenants/acme"
    run("create", c, "--key", arn, "--context", "tenant=acme")
    data = os.urandom(50_000)
    (tmp_path / "q3.csv").write_bytes(data)
    run("put", c, "reports/q3.csv", "q3.csv", "--key", arn)
    container_id = json.loads(run("--json", "describe", c)[0])["container_id"]
    # Copy the object out (`aws s3 cp s3://BUCKET/tenants/acme/objects/reports/q3.csv q3.csv.msg`).
    body = server_s3_client.get_object(Bucket=bucket, Key="tenants/acme/objects/reports/q3.csv")["Body"].read()
    (tmp_path / "q3.csv.msg").write_bytes(body)
    env = {**os.environ, "AWS_ENDPOINT_URL_KMS": moto_server_url}

    def decrypt(output: str, *context: str) -> subprocess.CompletedProcess[bytes]:
        argv = [cli, "--decrypt-unsigned", "-i", "q3.csv.msg", "-o", output, "-S"]
        argv += ["--wrapping-keys", f"key={arn}", "--commitment-policy", "require-encrypt-require-decrypt"]
        argv += ["--encryption-context", *context]
        return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, timeout=120, check=False)

    proc = decrypt("q3.out", f"envelope:container-id={container_id}", "tenant=acme")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert (tmp_path / "q3.out").read_bytes() == data
    # A context check that fails: the CLI writes nothing, and its exit status alone does not say so.
    proc = decrypt("wrong.out", "tenant=globex")
    assert not (tmp_path / "wrong.out").exists()
    assert proc.returncode == 0 and b"Skipping decrypt" in proc.stderr  # why docs/interop.md checks the file
