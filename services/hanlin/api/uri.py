"""URIs of models, datasets and artifacts, as they are written in a spec.

Four schemes, each with one shape:

- `s3://bucket/key`      an object (or a prefix) in S3-compatible storage
- `pvc://claim/path`     a path inside a PersistentVolumeClaim the operator mounts
- `file:///abs/path`     a local path (the local runner, tests, hostPath volumes)
- `hf://org/name`        a Hugging Face repository id (resolved from a local cache)

The same grammar is used twice: `parse_uri` in Python and a `pattern` in the
CRD, so the API server refuses what `parse_uri` refuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from hanlin.api.base import MAX_STRING

Scheme = Literal["s3", "pvc", "file", "hf"]
ALL_SCHEMES: tuple[Scheme, ...] = ("s3", "pvc", "file", "hf")
#: Where outputs can be written: not to a repository id.
WRITABLE_SCHEMES: tuple[Scheme, ...] = ("s3", "pvc", "file")

_SHAPES: dict[str, str] = {
    "s3": "s3://bucket/key",
    "pvc": "pvc://claim/path",
    "file": "file:///absolute/path",
    "hf": "hf://org/name",
}

# Bucket: the S3 naming rules (3-63 characters, lowercase, digits, dots, hyphens).
# Claim: a Kubernetes object name. Paths: no control characters, no empty segments.
_PATTERNS: dict[str, str] = {
    "s3": r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^/\x00-\x1f]+)*/?",
    "pvc": r"pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/[^/\x00-\x1f]+)*/?",
    "file": r"file:///([^/\x00-\x1f]+(/[^/\x00-\x1f]+)*/?)?",
    "hf": r"hf://[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?/[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?",
}


def uri_pattern(schemes: tuple[Scheme, ...] = ALL_SCHEMES) -> str:
    """An anchored regular expression (RE2-compatible) accepting those schemes."""
    return "^(" + "|".join(_PATTERNS[s] for s in schemes) + ")$"


class URIError(ValueError):
    """A URI is malformed or uses a scheme not allowed where it is written."""


@dataclass(frozen=True)
class ParsedURI:
    """A parsed URI.

    `location` is the bucket (s3), claim (pvc) or organisation (hf), and empty
    for file; `path` is the key (s3), the path in the claim (pvc), the absolute
    path (file) or the repository name (hf). Neither carries a trailing slash.
    """

    scheme: Scheme
    location: str
    path: str

    @property
    def repo_id(self) -> str:
        """`org/name` for an hf:// URI."""
        if self.scheme != "hf":
            raise URIError(f"{self} is not an hf:// URI")
        return f"{self.location}/{self.path}"

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file://{self.path}"
        tail = f"/{self.path}" if self.path else ""
        return f"{self.scheme}://{self.location}{tail}"


def parse_uri(text: str, schemes: tuple[Scheme, ...] = ALL_SCHEMES) -> ParsedURI:
    """Parse `text`, or raise URIError saying what shape was expected."""
    if not isinstance(text, str):
        raise URIError(f"a URI must be a string, not {type(text).__name__}")
    expected = ", ".join(_SHAPES[s] for s in schemes)
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise URIError(f"{text!r} is not a URI: expected one of {expected}")
    if scheme not in schemes:
        raise URIError(
            f"{text!r}: scheme {scheme!r} is not allowed here; expected one of {expected}"
        )
    if len(text) > MAX_STRING:
        raise URIError(f"{text[:40]!r}...: a URI is at most {MAX_STRING} characters")
    if not re.fullmatch(_PATTERNS[scheme], text):
        hint = {
            "s3": "the bucket must be 3-63 lowercase letters, digits, dots or hyphens",
            "pvc": "the claim must be a Kubernetes name (lowercase letters, digits, '-', '.')",
            "file": "the path must be absolute (three slashes: file:///data/x)",
            "hf": "it must name exactly an organisation and a repository",
        }[scheme]
        raise URIError(
            f"{text!r} is not a valid {scheme}:// URI: expected {_SHAPES[scheme]}; "
            f"{hint}; paths have no empty segments or control characters"
        )
    body = rest.rstrip("/")
    if scheme == "file":
        return ParsedURI("file", "", body or "/")
    location, _, path = body.partition("/")
    return ParsedURI(scheme, location, path)  # type: ignore[arg-type]


# The pattern goes only into the JSON schema (for the API server); in Python
# parse_uri's message says what is wrong instead of printing the regex.
def _validator(schemes: tuple[Scheme, ...]) -> AfterValidator:
    def check(value: str) -> str:
        parse_uri(value, schemes)
        return value

    return AfterValidator(check)


#: A URI of something to read: a model, a dataset, an adapter.
SourceURI = Annotated[
    str,
    Field(json_schema_extra={"maxLength": MAX_STRING, "pattern": uri_pattern(ALL_SCHEMES)}),
    _validator(ALL_SCHEMES),
]
#: A URI to write to: a checkpoint or output directory, a report.
OutputURI = Annotated[
    str,
    Field(json_schema_extra={"maxLength": MAX_STRING, "pattern": uri_pattern(WRITABLE_SCHEMES)}),
    _validator(WRITABLE_SCHEMES),
]
