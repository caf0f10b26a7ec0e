"""The URI grammar: what parses, what each part means, and clear refusals."""

from __future__ import annotations

import re

import pytest

from hanlin.api.uri import (
    ALL_SCHEMES,
    WRITABLE_SCHEMES,
    ParsedURI,
    URIError,
    parse_uri,
    uri_pattern,
)


@pytest.mark.parametrize(
    ("text", "scheme", "location", "path"),
    [
        ("s3://bucket/key", "s3", "bucket", "key"),
        ("s3://my.bucket-1/a/b/c.jsonl", "s3", "my.bucket-1", "a/b/c.jsonl"),
        ("s3://bucket", "s3", "bucket", ""),
        ("s3://bucket/prefix/", "s3", "bucket", "prefix"),
        ("pvc://claim/path/to/model", "pvc", "claim", "path/to/model"),
        ("pvc://models", "pvc", "models", ""),
        ("file:///abs/path", "file", "", "/abs/path"),
        ("file:///data/my file.txt", "file", "", "/data/my file.txt"),
        ("file:///", "file", "", "/"),
        (
            "hf://HuggingFaceTB/SmolLM2-135M-Instruct",
            "hf",
            "HuggingFaceTB",
            "SmolLM2-135M-Instruct",
        ),
    ],
)
def test_valid_uris_parse_into_their_parts(
    text: str, scheme: str, location: str, path: str
) -> None:
    parsed = parse_uri(text)
    assert (parsed.scheme, parsed.location, parsed.path) == (scheme, location, path)
    assert parse_uri(str(parsed)) == parsed  # str() is a URI that parses back the same
    assert re.fullmatch(uri_pattern(ALL_SCHEMES), text)  # and the CRD pattern agrees


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("bucket/key", "is not a URI"),
        ("s3:/bucket/key", "is not a URI"),
        ("ftp://host/file", "scheme 'ftp' is not allowed"),
        ("S3://bucket/key", "scheme 'S3' is not allowed"),
        ("s3://Bucket/key", "bucket must be 3-63 lowercase"),
        ("s3://ab/key", "bucket must be 3-63 lowercase"),
        ("s3://bucket//key", "no empty segments"),
        ("s3:///key", "bucket must be"),
        ("pvc://Claim/x", "claim must be a Kubernetes name"),
        ("pvc://-claim/x", "claim must be a Kubernetes name"),
        ("file://relative/path", "must be absolute"),
        ("file://host/abs", "must be absolute"),
        ("hf://org", "exactly an organisation and a repository"),
        ("hf://org/name/extra", "exactly an organisation and a repository"),
        ("hf://org/na me", "exactly an organisation and a repository"),
        ("s3://bucket/a\nb", "control characters"),
    ],
)
def test_malformed_uris_are_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(URIError, match=re.escape(says)) as info:
        parse_uri(text)
    assert repr(text) in str(info.value)  # the message quotes the URI
    assert not re.fullmatch(uri_pattern(ALL_SCHEMES), text)  # the CRD refuses it too


def test_output_uris_cannot_name_a_hub_repository() -> None:
    with pytest.raises(URIError, match="scheme 'hf' is not allowed here"):
        parse_uri("hf://org/name", WRITABLE_SCHEMES)
    assert not re.fullmatch(uri_pattern(WRITABLE_SCHEMES), "hf://org/name")
    assert parse_uri("s3://bucket/out", WRITABLE_SCHEMES).location == "bucket"


def test_repo_id_only_for_hf() -> None:
    assert parse_uri("hf://org/name").repo_id == "org/name"
    with pytest.raises(URIError, match="not an hf:// URI"):
        _ = ParsedURI("s3", "bucket", "k").repo_id


def test_non_strings_and_overlong_uris_are_refused() -> None:
    with pytest.raises(URIError, match="must be a string"):
        parse_uri(42)  # type: ignore[arg-type]
    with pytest.raises(URIError, match="at most 2048"):
        parse_uri("s3://bucket/" + "k" * 3000)
