"""The S3 server the tests use is a real one: boto3 and plain HTTP speak to it."""

from __future__ import annotations

import hashlib
import os

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from hanlin.dev.fixtures import S3Bucket

pytestmark = pytest.mark.integration


def test_put_get_list_delete(s3: S3Bucket) -> None:
    c, b = s3.client, s3.bucket
    c.put_object(Bucket=b, Key="a/one.txt", Body=b"one")
    c.put_object(Bucket=b, Key="a/two.txt", Body=b"two")
    c.put_object(Bucket=b, Key="b/three.txt", Body=b"three")
    assert c.get_object(Bucket=b, Key="a/two.txt")["Body"].read() == b"two"
    keys = [o["Key"] for o in c.list_objects_v2(Bucket=b, Prefix="a/")["Contents"]]
    assert keys == ["a/one.txt", "a/two.txt"]
    c.delete_object(Bucket=b, Key="a/one.txt")
    with pytest.raises(ClientError) as err:
        c.get_object(Bucket=b, Key="a/one.txt")
    assert err.value.response["Error"]["Code"] == "NoSuchKey"


def test_multipart_upload_reads_back_identical(s3: S3Bucket) -> None:
    c, b = s3.client, s3.bucket
    part = 5 * 1024 * 1024  # the S3 minimum for every part but the last
    data = os.urandom(4 * part + 123_457)  # ~20.1 MB, five parts
    upload = c.create_multipart_upload(Bucket=b, Key="big.bin")
    parts = []
    for number, offset in enumerate(range(0, len(data), part), start=1):
        resp = c.upload_part(
            Bucket=b,
            Key="big.bin",
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data[offset : offset + part],
        )
        parts.append({"ETag": resp["ETag"], "PartNumber": number})
    assert len(parts) == 5
    c.complete_multipart_upload(
        Bucket=b, Key="big.bin", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    got = c.get_object(Bucket=b, Key="big.bin")["Body"].read()
    assert len(got) == len(data)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_presigned_get_with_plain_http(s3: S3Bucket) -> None:
    s3.client.put_object(Bucket=s3.bucket, Key="p.txt", Body=b"presigned body")
    url = s3.client.generate_presigned_url(
        "get_object", Params={"Bucket": s3.bucket, "Key": "p.txt"}, ExpiresIn=60
    )
    resp = httpx.get(url, timeout=10)
    assert resp.status_code == 200
    assert resp.content == b"presigned body"
    # Tampering with the signature is refused.
    bad = httpx.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=00"), timeout=10)
    assert bad.status_code == 403


def test_wrong_credentials_are_refused(s3: S3Bucket) -> None:
    wrong = boto3.client(
        "s3",
        endpoint_url=s3.env["AWS_ENDPOINT_URL"],
        aws_access_key_id=s3.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key="not-the-secret",
        region_name=s3.env["AWS_DEFAULT_REGION"],
    )
    with pytest.raises(ClientError) as err:
        wrong.list_objects_v2(Bucket=s3.bucket)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    wrong.close()
