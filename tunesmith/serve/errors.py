"""Errors in the OpenAI format: `{"error": {"message", "type", "param", "code"}}` with the matching status.

Every 503 carries `Retry-After` (seconds), so a client (the official one honours it) waits as long as the
server expects the queue to need instead of hammering it.
"""

from __future__ import annotations

from typing import Any

DEFAULT_RETRY_AFTER_S = 1


class ApiError(Exception):
    """A request the server refuses; `status` is the HTTP status, the rest is OpenAI's error object."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        """`Retry-After` on every 503 (the given wait, else a second)."""
        if self.status != 503:
            return {}
        return {"Retry-After": str(max(1, self.retry_after_s or DEFAULT_RETRY_AFTER_S))}


def not_found(name: str, known: list[str]) -> ApiError:
    return ApiError(404, f"The model '{name}' does not exist; this server serves: {', '.join(known) or 'nothing'}",
                    code="model_not_found", param="model")


def queue_full(waiting: int, retry_after_s: int) -> ApiError:
    return ApiError(503, f"The server's request queue is full ({waiting} waiting, about {retry_after_s} s of work); "
                    f"retry after {retry_after_s} s", type_="server_overloaded", code="queue_full",
                    retry_after_s=retry_after_s)
