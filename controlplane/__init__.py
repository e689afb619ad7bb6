"""controlplane: provisions containers; the side of envelope that never sees a key.

It calls exactly one KMS operation, GenerateDataKeyWithoutPlaintext, and
writes the encrypted data key into a new container's header (or, rotating,
into a new generation record). It must never
import the data plane, the KMS adapters or any cipher (import-linter checks
this), and must never ask for or hold a plaintext data key.

    from envelope.kms import AwsKms
    from controlplane import ControlPlane

    header = ControlPlane(AwsKms(boto3.client("kms"))).create_container(
        "s3://bucket/tenants/acme", key_id="alias/acme", encryption_context={"tenant": "acme"}
    )
"""

from controlplane.plane import ContainerRequest, ContainerResult, ControlPlane, KeyGeneration, LocationLike

__all__ = ["ContainerRequest", "ContainerResult", "ControlPlane", "KeyGeneration", "LocationLike"]
