"""Placeholder until implemented."""

from aiohttp import web

routes = web.RouteTableDef()
