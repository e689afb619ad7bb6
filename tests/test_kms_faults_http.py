"""KMS as a faulty peer: transient HTTP answers with no KMS error code, lost connections, and
malformed 200 responses.

Every shape is answered by a `before-send` hook with real HTTP status, headers and body, so
botocore's own parser (and, where configured, its own retry logic) runs on it exactly as on a
real answer. Retries run on a fake clock: no test sleeps.
"""

from __future__ import annotations

import base64
import json
import traceback
import types
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ProxyConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)

from envelope import errors
from envelope.kms import AwsKms, RetryPolicy
from tests.conftest import REGION
from tests.support.crafted import CraftedKms, always, first

GENERATE = "GenerateDataKeyWithoutPlaintext"
DECRYPT = "Decrypt"
PLAINTEXT_MARKER = b"\x5aK" * 16  # 32 bytes a test can look for


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def policy(clock: FakeClock, attempts: int) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=attempts,
        base_delay=0.1,
        max_delay=1.0,
        deadline=600.0,
        clock=clock,
        sleep=clock.sleep,
        rng=lambda: 1.0,
    )


def client_with(moto_aws: None, retries: dict[str, Any]) -> Any:
    return boto3.client("kms", region_name=REGION, config=Config(retries=retries))


BOTOCORE_OFF = {"mode": "standard", "total_max_attempts": 1}


@pytest.fixture
def kms_client(moto_aws: None) -> Any:
    return client_with(moto_aws, BOTOCORE_OFF)


@pytest.fixture
def arn(kms_client: Any) -> str:
    return str(kms_client.create_key()["KeyMetadata"]["Arn"])


def run_op(kms: AwsKms, client: Any, arn: str, op: str) -> Any:
    if op == GENERATE:
        return kms.generate_data_key_without_plaintext(arn)
    blob = client.generate_data_key_without_plaintext(KeyId=arn, KeySpec="AES_256")["CiphertextBlob"]
    return kms.decrypt(blob, key_id=arn)


# -- 1. transient HTTP answers without a recognised KMS error code ------------------------------

TRANSIENT = [
    # (id, status, body, exception, code botocore reports)
    ("503-empty", 503, b"", errors.KmsTransientError, "503"),
    ("502-html", 502, b"<html><body>502 Bad Gateway</body></html>", errors.KmsTransientError, "502"),
    ("504-empty-object", 504, b"{}", errors.KmsTransientError, "504"),
    ("500-json-without-type", 500, b'{"message": "internal"}', errors.KmsTransientError, "500"),
    ("500-unknown-code", 500, b'{"__type": "com.amazon.coral#InternalFailure"}', errors.KmsTransientError, "InternalFailure"),
    ("503-unknown-code", 503, b'{"__type": "ServiceUnavailableException"}', errors.KmsTransientError, "ServiceUnavailableException"),
    ("400-request-timeout", 400, b'{"__type": "RequestTimeoutException"}', errors.KmsTransientError, "RequestTimeoutException"),
    ("429-empty", 429, b"", errors.ThrottlingError, "429"),
    ("429-unknown-code", 429, b'{"__type": "SlowDown"}', errors.ThrottlingError, "SlowDown"),
]  # fmt: skip
TRANSIENT_IDS = [t[0] for t in TRANSIENT]


@pytest.mark.parametrize(("label", "status", "body", "exc", "code"), TRANSIENT, ids=TRANSIENT_IDS)
@pytest.mark.parametrize("op", [GENERATE, DECRYPT])
def test_transient_status_is_retried_until_success(
    kms_client: Any, arn: str, label: str, status: int, body: bytes, exc: type, code: str, op: str
) -> None:
    clock = FakeClock()
    kms = AwsKms(kms_client, retry=policy(clock, attempts=4))
    crafted = CraftedKms(kms_client, first(3, (status, body), op=op))
    result = run_op(kms, kms_client, arn, op)
    assert result.key_id == arn
    assert crafted.count(op) == 4
    assert clock.sleeps == [0.1, 0.2, 0.4]


@pytest.mark.parametrize(("label", "status", "body", "exc", "code"), TRANSIENT, ids=TRANSIENT_IDS)
def test_transient_status_gives_up_after_the_bound_with_a_typed_error(
    kms_client: Any, arn: str, label: str, status: int, body: bytes, exc: type, code: str
) -> None:
    clock = FakeClock()
    kms = AwsKms(kms_client, retry=policy(clock, attempts=3))
    crafted = CraftedKms(kms_client, always((status, body)))
    with pytest.raises(exc) as info:
        kms.generate_data_key_without_plaintext(arn)
    assert isinstance(info.value, errors.KmsError)
    assert info.value.retryable
    assert info.value.code == code
    assert info.value.http_status == status
    assert info.value.attempts == 3
    assert crafted.count() == 3
    assert GENERATE in str(info.value)


def test_an_endless_error_message_is_cut_short(kms_client: Any, arn: str) -> None:
    body = json.dumps({"__type": "ServiceUnavailableException", "message": "m" * 1_000_000}).encode()
    CraftedKms(kms_client, always((503, body)))
    with pytest.raises(errors.KmsTransientError) as info:
        AwsKms(kms_client, retry=policy(FakeClock(), attempts=1)).generate_data_key_without_plaintext(arn)
    assert len(str(info.value)) < 1024
    assert "(truncated)" in str(info.value)


BOTOCORE_ON = [
    pytest.param({"mode": "standard", "total_max_attempts": 3}, id="standard-3"),
    pytest.param({"mode": "legacy", "max_attempts": 2}, id="legacy-3"),
]


@pytest.fixture
def botocore_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's own backoff between its retries, recorded instead of slept."""
    import botocore.endpoint

    slept: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=slept.append))
    return slept


@pytest.mark.parametrize("retries", BOTOCORE_ON)
@pytest.mark.parametrize(
    ("label", "status", "body"),
    [("503-empty", 503, b""), ("502-html", 502, b"<html></html>"), ("500-no-type", 500, b"{}"), ("429", 429, b"")],
    ids=["503", "502", "500", "429"],
)
def test_botocore_retries_of_transient_statuses_count_towards_one_budget(
    moto_aws: None, botocore_sleeps: list[float], retries: dict[str, Any], label: str, status: int, body: bytes
) -> None:
    client = client_with(moto_aws, retries)
    arn = client.create_key()["KeyMetadata"]["Arn"]
    clock = FakeClock()
    kms = AwsKms(client, retry=policy(clock, attempts=6))
    crafted = CraftedKms(client, always((status, body)))
    with pytest.raises(errors.KmsError) as info:
        kms.generate_data_key_without_plaintext(arn)
    assert info.value.retryable
    assert crafted.count() == 6, "botocore's attempts and envelope's multiplied"
    assert info.value.attempts == 6
    assert len(clock.sleeps) == 1  # two botocore bursts of 3, one envelope backoff between them
    assert len(botocore_sleeps) == 4  # botocore backed off twice inside each burst


NOT_TRANSIENT = [
    # A recognised non-retryable code decides, whatever the status; an unknown code at a
    # non-transient status is not retried either.
    ("disabled-at-503", 503, b'{"__type": "DisabledException"}', errors.DisabledError),
    ("access-denied-at-500", 500, b'{"__type": "AccessDeniedException"}', errors.AccessDeniedError),
    ("bad-ciphertext-at-502", 502, b'{"__type": "InvalidCiphertextException"}', errors.InvalidCiphertextError),
    ("not-found-at-504", 504, b'{"__type": "NotFoundException"}', errors.KmsNotFoundError),
    ("unknown-at-400", 400, b'{"__type": "SomethingNewException"}', errors.KmsError),
    ("empty-at-400", 400, b"", errors.KmsError),
    ("empty-at-501", 501, b"", errors.KmsError),
]


@pytest.mark.parametrize(("label", "status", "body", "exc"), NOT_TRANSIENT, ids=[t[0] for t in NOT_TRANSIENT])
@pytest.mark.parametrize("op", [GENERATE, DECRYPT])
def test_recognised_or_non_transient_failures_are_not_retried(
    kms_client: Any, arn: str, label: str, status: int, body: bytes, exc: type, op: str
) -> None:
    clock = FakeClock()
    kms = AwsKms(kms_client, retry=policy(clock, attempts=5))
    crafted = CraftedKms(kms_client, always((status, body)))
    with pytest.raises(exc) as info:
        run_op(kms, kms_client, arn, op) if op == GENERATE else kms.decrypt(b"x" * 40, key_id=arn)
    assert not info.value.retryable
    assert not isinstance(info.value, errors.KmsTransientError)
    assert crafted.count(op) == 1
    assert clock.sleeps == []


# -- 1b. connection failures -------------------------------------------------------------------

URL = f"https://kms.{REGION}.amazonaws.com/"
CONNECTION_FAILURES = [
    pytest.param(lambda: EndpointConnectionError(endpoint_url=URL), id="endpoint-connection"),
    pytest.param(lambda: ConnectTimeoutError(endpoint_url=URL), id="connect-timeout"),
    pytest.param(lambda: ReadTimeoutError(endpoint_url=URL), id="read-timeout"),
    pytest.param(lambda: ConnectionClosedError(endpoint_url=URL), id="connection-closed"),
    pytest.param(lambda: ProxyConnectionError(proxy_url="http://127.0.0.1:9", error="refused"), id="proxy"),
    pytest.param(lambda: ResponseStreamingError(error="reset mid-body"), id="response-streaming"),
]


@pytest.mark.parametrize("make", CONNECTION_FAILURES)
@pytest.mark.parametrize("op", [GENERATE, DECRYPT])
def test_connection_failures_are_retried_until_success(
    kms_client: Any, arn: str, make: Callable[[], Exception], op: str
) -> None:
    clock = FakeClock()
    kms = AwsKms(kms_client, retry=policy(clock, attempts=3))
    crafted = CraftedKms(kms_client, first(2, make(), op=op))
    assert run_op(kms, kms_client, arn, op).key_id == arn
    assert crafted.count(op) == 3
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize("make", CONNECTION_FAILURES)
def test_connection_failures_give_up_with_a_connection_error(
    kms_client: Any, arn: str, make: Callable[[], Exception]
) -> None:
    clock = FakeClock()
    kms = AwsKms(kms_client, retry=policy(clock, attempts=4))
    crafted = CraftedKms(kms_client, always(make()))
    with pytest.raises(errors.KmsConnectionError) as info:
        kms.generate_data_key_without_plaintext(arn)
    assert info.value.retryable
    assert info.value.attempts == 4
    assert crafted.count() == 4


@pytest.mark.parametrize("retries", BOTOCORE_ON)
@pytest.mark.parametrize("make", CONNECTION_FAILURES[:3])
def test_botocore_retries_of_connection_failures_count_towards_one_budget(
    moto_aws: None, botocore_sleeps: list[float], retries: dict[str, Any], make: Callable[[], Exception]
) -> None:
    # botocore reports no RetryAttempts on an exception: envelope counts the attempts itself.
    client = client_with(moto_aws, retries)
    arn = client.create_key()["KeyMetadata"]["Arn"]
    clock = FakeClock()
    kms = AwsKms(client, retry=policy(clock, attempts=6))
    crafted = CraftedKms(client, always(make()))
    with pytest.raises(errors.KmsConnectionError) as info:
        kms.generate_data_key_without_plaintext(arn)
    assert crafted.count() == 6, "botocore's attempts and envelope's multiplied"
    assert info.value.attempts == 6
    assert len(botocore_sleeps) == 4


def test_tls_failure_is_not_retried(kms_client: Any, arn: str) -> None:
    clock = FakeClock()
    kms = AwsKms(kms_client, retry=policy(clock, attempts=5))
    crafted = CraftedKms(kms_client, always(SSLError(endpoint_url=URL, error="certificate verify failed")))
    with pytest.raises(errors.KmsError) as info:
        kms.generate_data_key_without_plaintext(arn)
    assert info.value.code == "SSLError"
    assert not info.value.retryable
    assert not isinstance(info.value, errors.KmsConnectionError)
    assert crafted.count() == 1


def test_from_config_client_retries_transient_statuses(moto_aws: None) -> None:
    # The convenience constructor (the CLI's) turns botocore's retries off: envelope's are the only ones.
    clock = FakeClock()
    kms = AwsKms.from_config(region_name=REGION, retry=policy(clock, attempts=4))
    client = kms._client
    arn = client.create_key()["KeyMetadata"]["Arn"]
    crafted = CraftedKms(client, first(2, (503, b""), op=GENERATE))
    assert kms.generate_data_key_without_plaintext(arn).key_id == arn
    assert crafted.count(GENERATE) == 3
    crafted.script = always((502, b""))
    with pytest.raises(errors.KmsTransientError) as info:
        kms.generate_data_key_without_plaintext(arn)
    assert info.value.attempts == 4
    assert crafted.count(GENERATE) == 3 + 4


# -- 2. malformed 200 responses ---------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def decrypt_body(arn: str, **fields: Any) -> bytes:
    doc: dict[str, Any] = {
        "KeyId": arn,
        "Plaintext": _b64(PLAINTEXT_MARKER),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def generate_body(arn: str, **fields: Any) -> bytes:
    doc: dict[str, Any] = {"KeyId": arn, "CiphertextBlob": _b64(b"c" * 64)}
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


DEEP = b'{"KeyId": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"

MALFORMED: list[tuple[str, str, Callable[[str], bytes]]] = [
    ("bad-base64", DECRYPT, lambda a: decrypt_body(a, Plaintext="!!!not base64")),
    ("bad-base64-padding", DECRYPT, lambda a: decrypt_body(a, Plaintext="QUJD" + "Q")),
    ("plaintext-number", DECRYPT, lambda a: decrypt_body(a, Plaintext=12345)),
    ("plaintext-list", DECRYPT, lambda a: decrypt_body(a, Plaintext=[1, 2, 3])),
    ("plaintext-object", DECRYPT, lambda a: decrypt_body(a, Plaintext={"a": 1})),
    ("plaintext-null", DECRYPT, lambda a: decrypt_body(a, Plaintext=None)),
    ("plaintext-missing", DECRYPT, lambda a: decrypt_body(a, Plaintext=...)),
    ("plaintext-empty", DECRYPT, lambda a: decrypt_body(a, Plaintext="")),
    ("plaintext-4097", DECRYPT, lambda a: decrypt_body(a, Plaintext=_b64(PLAINTEXT_MARKER * 128 + b"x"))),
    ("keyid-number", DECRYPT, lambda a: decrypt_body(a, KeyId=7)),
    ("keyid-missing", DECRYPT, lambda a: decrypt_body(a, KeyId=...)),
    ("keyid-alias-arn", DECRYPT, lambda a: decrypt_body(a, KeyId=a.rsplit(":", 1)[0] + ":alias/x")),
    ("body-array", DECRYPT, lambda a: b"[1, 2, 3]"),
    ("body-string", DECRYPT, lambda a: b'"Plaintext"'),
    ("body-null", DECRYPT, lambda a: b"null"),
    ("body-number", DECRYPT, lambda a: b"42"),
    ("body-not-json", DECRYPT, lambda a: b"<html>hello</html>"),
    ("body-not-utf8", DECRYPT, lambda a: b"\xff\xfe\xfd"),
    ("body-empty", DECRYPT, lambda a: b""),
    ("body-deep-nesting", DECRYPT, lambda a: DEEP),
    ("blob-bad-base64", GENERATE, lambda a: generate_body(a, CiphertextBlob="***")),
    ("blob-number", GENERATE, lambda a: generate_body(a, CiphertextBlob=3)),
    ("blob-list", GENERATE, lambda a: generate_body(a, CiphertextBlob=["a"])),
    ("blob-missing", GENERATE, lambda a: generate_body(a, CiphertextBlob=...)),
    ("blob-6145", GENERATE, lambda a: generate_body(a, CiphertextBlob=_b64(b"c" * 6145))),
    ("gen-keyid-list", GENERATE, lambda a: generate_body(a, KeyId=[a])),
    ("gen-body-array", GENERATE, lambda a: b"[]"),
    ("gen-body-deep-nesting", GENERATE, lambda a: DEEP),
]


@pytest.mark.parametrize(("label", "op", "body"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_response_is_an_invalid_response_error_not_retried(
    kms_client: Any, arn: str, label: str, op: str, body: Callable[[str], bytes]
) -> None:
    clock = FakeClock()
    kms = AwsKms(kms_client, retry=policy(clock, attempts=5))
    crafted = CraftedKms(kms_client, always((200, body(arn))))
    with pytest.raises(errors.KmsInvalidResponseError) as info:
        if op == GENERATE:
            kms.generate_data_key_without_plaintext(arn)
        else:
            kms.decrypt(b"x" * 40, key_id=arn)
    err = info.value
    assert isinstance(err, errors.KmsError)
    assert err.code == "InvalidResponse"
    assert err.operation == op
    assert not err.retryable
    assert crafted.count() == 1
    assert clock.sleeps == []
    # No parser frames (which hold the body) are kept: no chained context, nothing secret in the text.
    assert err.__context__ is None
    assert err.__cause__ is None
    text = "".join(traceback.format_exception(err))
    assert _b64(PLAINTEXT_MARKER)[:20] not in text


def test_invalid_response_keeps_no_plaintext_in_traceback_locals(kms_client: Any, arn: str) -> None:
    # A Plaintext one byte too long: it parses, and the length check refuses it.
    oversize = PLAINTEXT_MARKER * 128 + b"x"
    CraftedKms(kms_client, always((200, decrypt_body(arn, Plaintext=_b64(oversize)))))
    with pytest.raises(errors.KmsInvalidResponseError) as info:
        AwsKms(kms_client, retry=policy(FakeClock(), attempts=1)).decrypt(b"x" * 40, key_id=arn)
    tb = info.value.__traceback__
    frames = 0
    while tb is not None:
        if "/envelope/" not in tb.tb_frame.f_code.co_filename:  # the test's own frame holds its inputs
            tb = tb.tb_next
            continue
        frames += 1
        for name, value in tb.tb_frame.f_locals.items():
            assert not (isinstance(value, bytes | bytearray) and PLAINTEXT_MARKER in value), name
            assert not (isinstance(value, dict) and "Plaintext" in value), name
        tb = tb.tb_next
    assert frames >= 1


# -- 2b. the same with a stub client (no botocore at all) ---------------------------------------

STUB_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


class StubKms:
    """A duck-typed client: returns (or raises) whatever it is given, counts calls."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls = 0

    def _reply(self, **_: Any) -> Any:
        self.calls += 1
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer

    def generate_data_key_without_plaintext(self, **kw: Any) -> Any:
        return self._reply(**kw)

    def decrypt(self, **kw: Any) -> Any:
        return self._reply(**kw)


STUB_ANSWERS = [
    pytest.param([1, 2], id="list"),
    pytest.param(None, id="none"),
    pytest.param("Plaintext", id="str"),
    pytest.param({"KeyId": STUB_ARN, "Plaintext": "a str"}, id="plaintext-str"),
    pytest.param({"KeyId": STUB_ARN, "Plaintext": 5}, id="plaintext-int"),
    pytest.param({"KeyId": STUB_ARN, "Plaintext": [PLAINTEXT_MARKER]}, id="plaintext-list"),
    pytest.param({"KeyId": b"arn", "Plaintext": PLAINTEXT_MARKER}, id="keyid-bytes"),
    pytest.param({"KeyId": STUB_ARN + "x", "Plaintext": PLAINTEXT_MARKER}, id="keyid-not-an-arn"),
    pytest.param(TypeError("argument should be a bytes-like object"), id="raises-typeerror"),
    pytest.param(AttributeError("'list' object has no attribute 'get'"), id="raises-attributeerror"),
    pytest.param(ValueError("Incorrect padding"), id="raises-valueerror"),
    pytest.param(RecursionError("maximum recursion depth exceeded"), id="raises-recursionerror"),
    pytest.param(KeyError("Plaintext"), id="raises-keyerror"),
]


@pytest.mark.parametrize("answer", STUB_ANSWERS)
@pytest.mark.parametrize("op", [GENERATE, DECRYPT])
def test_stub_client_malformed_answers_are_invalid_responses(answer: Any, op: str) -> None:
    stub = StubKms(answer)
    clock = FakeClock()
    kms = AwsKms(stub, retry=policy(clock, attempts=5))
    with pytest.raises(errors.KmsInvalidResponseError) as info:
        if op == GENERATE:
            kms.generate_data_key_without_plaintext(STUB_ARN)
        else:
            kms.decrypt(b"x" * 40, key_id=STUB_ARN)
    assert info.value.code == "InvalidResponse"
    assert not info.value.retryable
    assert info.value.__context__ is None
    assert stub.calls == 1
    assert clock.sleeps == []


def test_stub_client_other_failures_stay_typed() -> None:
    stub = StubKms(RuntimeError("something odd"))
    with pytest.raises(errors.KmsError) as info:
        AwsKms(stub, retry=policy(FakeClock(), attempts=3)).decrypt(b"x" * 40)
    assert info.value.code == "RuntimeError"
    assert not info.value.retryable
    assert stub.calls == 1


def test_stub_client_well_formed_answer_is_accepted() -> None:
    stub = StubKms({"KeyId": STUB_ARN, "Plaintext": PLAINTEXT_MARKER})
    key = AwsKms(stub).decrypt(b"x" * 40, key_id=STUB_ARN)
    assert key.key_id == STUB_ARN
    assert len(key) == 32
    key.wipe()
