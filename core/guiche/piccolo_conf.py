"""Piccolo's configuration module (PICCOLO_CONF=guiche.piccolo_conf).

Piccolo finds its engine through this module; the database URL comes from the
environment (`DATABASE_URL`), which `guiche run` sets when it starts the embedded
Postgres. Plugin apps are discovered through the `guiche.plugins` entry points.
"""

import os

from piccolo.conf.apps import AppRegistry
from piccolo.engine.postgres import PostgresEngine

from guiche.plugin_host.apps import plugin_piccolo_apps

DB = PostgresEngine(
    config={"dsn": os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/guiche")},
    log_queries=False,
)

APP_REGISTRY = AppRegistry(
    apps=["guiche.piccolo_app", *plugin_piccolo_apps()],
)
