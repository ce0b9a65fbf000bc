"""Placeholder until implemented."""

from aiohttp import web


def setup_openapi(app: web.Application) -> None:
    return None
