"""Pure-ASGI middleware that checks the webhook's HMAC signature over the raw body.

For the protected paths it reads the whole body (the body-limit middleware outside it caps
the size), checks ``X-Hub-Signature`` (see :func:`app.http.webhook.signature_ok`) and only
then calls the application, with the body replayed and also placed in
``scope["app.raw_body"]`` so the route does not read it twice.

Answers, all in the common error shape:
- 503 ``webhook_auth_not_configured``: no secret set and unsigned webhooks not allowed;
- 403 ``forbidden``: a missing or wrong signature;
- 400 ``missing_delivery_id``: no ``X-Zammad-Delivery`` (or a blank first one: the route records
  the first) while ``require_delivery_id`` is set;
- nothing at all when the client disconnects mid-body (there is no one to answer).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.names import DELIVERY_HEADER_RAW, INGEST_PATHS, RAW_BODY_KEY, SIGNATURE_HEADER_RAW
from app.http.responses import send_error
from app.http.webhook import signature_ok


class ClientDisconnected(Exception):
    """The client went away before the body was complete."""


async def read_body(receive: Receive) -> bytes:
    """Read a whole ASGI request body.

    Raises:
        ClientDisconnected: on ``http.disconnect`` before ``more_body`` ended.
    """
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected()
    if not message.get("more_body", False):  # the whole body in one message (a small webhook)
        return message.get("body", b"")
    chunks: list[bytes] = [message.get("body", b"")]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def route_path(scope: Scope) -> str:
    """The path the router matches: ``scope["path"]`` without ``scope["root_path"]``, as
    Starlette's router takes it off (an ASGI server run with ``--root-path /archiver`` puts
    ``/archiver/ingest`` in ``path``; Starlette then routes ``/ingest``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and len(path) > len(root) and path[len(root)] == "/":
        return path[len(root) :]
    return path


class HmacSignatureMiddleware:
    """Verify ``X-Hub-Signature`` on ``POST`` requests to ``paths``.

    Args:
        app: the wrapped application.
        secret: the webhook HMAC token (UTF-8 bytes) or ``None`` when none is configured.
        allow_unsigned: with no secret, let unsigned requests through (tests only).
        paths: exact request paths to protect, as the router sees them (:func:`route_path`;
            default: the webhook paths, ``/ingest`` and ``/ingest/batch``). The webhook routes
            refuse a request that did not pass here (:data:`~app.http.names.RAW_BODY_KEY`
            unset), so a path this test and the router see differently fails closed.
        require_delivery_id: refuse requests without ``X-Zammad-Delivery``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        secret: bytes | None,
        allow_unsigned: bool = False,
        paths: frozenset[str] = INGEST_PATHS,
        require_delivery_id: bool = False,
    ) -> None:
        self.app = app
        self.secret = secret
        self.allow_unsigned = allow_unsigned
        self.paths = paths
        self.require_delivery_id = require_delivery_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or route_path(scope) not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.secret is None and not self.allow_unsigned:
            await send_error(
                send,
                503,
                "webhook_auth_not_configured",
                "no WEBHOOK_HMAC_SECRET is set; unsigned webhooks are refused",
            )
            return
        try:
            body = await read_body(receive)
        except ClientDisconnected:
            return
        header = None
        delivery: bytes | None = None
        need_delivery = self.require_delivery_id
        for name, value in scope["headers"]:
            # The first of each counts, as for the route, which records the first delivery id.
            if name == SIGNATURE_HEADER_RAW and header is None:
                header = value.decode("latin-1")
                if not need_delivery:
                    break
            elif name == DELIVERY_HEADER_RAW and delivery is None:
                delivery = value
        has_delivery = delivery is not None and bool(delivery.strip())
        if self.secret is not None and not signature_ok(body, header, self.secret):
            detail = (
                "missing X-Hub-Signature" if header is None else "X-Hub-Signature does not match the body"
            )
            await send_error(send, 403, "forbidden", detail)
            return
        if self.require_delivery_id and not has_delivery:
            await send_error(send, 400, "missing_delivery_id", "the X-Zammad-Delivery header is required")
            return
        scope[RAW_BODY_KEY] = body
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
