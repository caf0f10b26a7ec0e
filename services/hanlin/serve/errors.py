"""One error-code enum for every transport (REST renders JSON, gRPC a status code)."""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """A stable error code with its HTTP status, gRPC status name and OpenAI error type."""

    INVALID_REQUEST = ("invalid_request_error", 400, "INVALID_ARGUMENT")
    CONTEXT_TOO_LONG = ("invalid_request_error", 400, "INVALID_ARGUMENT")
    UNAUTHENTICATED = ("authentication_error", 401, "UNAUTHENTICATED")
    MODEL_NOT_FOUND = ("invalid_request_error", 404, "NOT_FOUND")
    OVERLOADED = ("rate_limit_error", 429, "RESOURCE_EXHAUSTED")
    ENGINE_DEAD = ("server_error", 503, "UNAVAILABLE")
    INTERNAL = ("server_error", 500, "INTERNAL")

    @property
    def error_type(self) -> str:
        """The OpenAI `error.type` string."""
        return self.value[0]

    @property
    def http_status(self) -> int:
        """The HTTP status REST answers with."""
        return self.value[1]

    @property
    def grpc_status(self) -> str:
        """The name of the `grpc.StatusCode` gRPC answers with."""
        return self.value[2]


class RequestError(Exception):
    """A request the engine refuses; `param` names the offending field when there is one."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        param: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[type[RequestError], tuple[object, ...]]:
        # Errors cross from the engine process to the server: pickle every field.
        return (RequestError, (self.code, self.message, self.param, self.retry_after_s))
