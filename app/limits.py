"""ASGI middleware that refuses request bodies above a size limit while they stream in."""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]


class BodySizeLimit:
    """413 for any body over `max_bytes`: from Content-Length up front, else counted as it arrives.

    Counting happens before the multipart parser spools anything, so a hostile upload costs at
    most `max_bytes` of reading. Whatever the app does with the truncated body, its response is
    replaced by the 413.
    """

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._send_413(send)
            return
        state = {"received": 0, "over": False, "started": False}

        async def limited_receive() -> dict[str, Any]:
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["over"] = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if state["over"]:
                return  # the 413 below answers instead
            state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["started"]:
            await self._send_413(send)

    async def _send_413(self, send: Any) -> None:
        body = json.dumps(
            {
                "detail": {
                    "code": "too_large",
                    "message": f"request body exceeds {self.max_bytes} bytes (PHONONSCREEN_MAX_UPLOAD_BYTES)",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
