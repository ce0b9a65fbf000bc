"""Log setup: one JSON object per line (or a human line), carrying the request's context.

The request id, tenant and user live in context variables, so every log line written
while serving a request says which request, company and person it belongs to, without
passing them around. Tenant and user are known only after authentication, so the web
layer binds a resolver that is asked at format time.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import orjson

request_id_var: ContextVar[str | None] = ContextVar("guiche_request_id", default=None)
tenant_var: ContextVar[str | None] = ContextVar("guiche_tenant", default=None)
user_var: ContextVar[str | None] = ContextVar("guiche_user", default=None)
_resolver_var: ContextVar[Callable[[], Mapping[str, str | None]] | None] = ContextVar(
    "guiche_log_resolver", default=None
)

_HANDLER_MARK = "_guiche_handler"
PER_CALL_LOGGERS = ("httpx", "httpcore", "taskiq.receiver")
"""Libraries logging every outbound request / every task run at INFO; quiet below WARNING
unless the level is DEBUG. Guichê logs the outcomes itself (failures, retries)."""
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def log_context() -> dict[str, str]:
    """The current request id, tenant and user (only those that are known)."""
    context = {
        "request_id": request_id_var.get(),
        "tenant": tenant_var.get(),
        "user": user_var.get(),
    }
    resolver = _resolver_var.get()
    if resolver is not None:
        for key, value in resolver().items():
            if value is not None and context.get(key) is None:
                context[key] = value
    return {key: value for key, value in context.items() if value is not None}


@contextmanager
def bound_context(
    *,
    request_id: str | None = None,
    tenant: str | None = None,
    user: str | None = None,
    resolver: Callable[[], Mapping[str, str | None]] | None = None,
) -> Iterator[None]:
    """Bind log context for a unit of work (a request, a task); restored on exit.

    `resolver` supplies values learned later (the principal, after auth) at log time.
    """
    tokens = [
        (request_id_var, request_id_var.set(request_id)),
        (tenant_var, tenant_var.set(tenant)),
        (user_var, user_var.set(user)),
    ]
    resolver_token = _resolver_var.set(resolver)
    try:
        yield
    finally:
        _resolver_var.reset(resolver_token)
        for var, token in reversed(tokens):
            var.reset(token)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_ATTRS and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(log_context())
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class HumanFormatter(logging.Formatter):
    """`time LEVEL logger message key=value ...` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {**log_context(), **_extras(record)}
        if not fields:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the fields
        pairs = " ".join(f"{key}={value}" for key, value in fields.items())
        return f"{head} {pairs}{sep}{tail}"


def wants_json(json: bool | None) -> bool:
    """JSON unless asked otherwise or a person reads stderr (a terminal): collectors parse
    lines, people read them."""
    if json is not None:
        return json
    isatty = getattr(sys.stderr, "isatty", None)
    return not (isatty is not None and isatty())


def configure_logging(level: str = "INFO", json: bool | None = None) -> None:
    """Send every logger's records to stderr in one format; safe to call again.

    `json=None` (GUICHE_LOG_JSON unset) picks by where stderr goes, see `wants_json`.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if wants_json(json) else HumanFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # guiche.access writes one line per request; aiohttp's own access log would repeat it.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # httpx logs each request and taskiq each task run at INFO: two lines per message sent,
    # formatted on the worker's hot path. Warnings still show; `DEBUG` shows everything.
    per_call_level = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    for name in PER_CALL_LOGGERS:
        logging.getLogger(name).setLevel(per_call_level)


__all__ = [
    "HumanFormatter",
    "JsonFormatter",
    "bound_context",
    "configure_logging",
    "log_context",
    "request_id_var",
    "tenant_var",
    "user_var",
    "wants_json",
]
