"""Core's Piccolo app: its tables and the migrations folder shipped inside the wheel."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

import guiche.piccolo_migrations as _migrations
from guiche.models import CORE_TABLES

MIGRATIONS_FOLDER = str(Path(_migrations.__file__).parent)

APP_CONFIG = AppConfig(
    app_name="guiche",
    migrations_folder_path=MIGRATIONS_FOLDER,
    table_classes=list(CORE_TABLES),
    migration_dependencies=[],
    commands=[],
)
