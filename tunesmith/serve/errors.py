"""Errors in the OpenAI format: `{"error": {"message", "type", "param", "code"}}` with the matching status."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the server refuses; `status` is the HTTP status, the rest is OpenAI's error object."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def not_found(name: str, known: list[str]) -> ApiError:
    return ApiError(404, f"The model '{name}' does not exist; this server serves: {', '.join(known) or 'nothing'}",
                    code="model_not_found", param="model")


def queue_full(size: int) -> ApiError:
    return ApiError(503, f"The server's request queue is full ({size} waiting); retry shortly",
                    type_="server_overloaded", code="queue_full")
