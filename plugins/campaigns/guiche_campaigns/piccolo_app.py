"""The campaigns plugin's Piccolo app: its migrations (the tables are written in SQL)."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

MIGRATIONS_FOLDER = str(Path(__file__).parent / "piccolo_migrations")

APP_CONFIG = AppConfig(
    app_name="campaigns",
    migrations_folder_path=MIGRATIONS_FOLDER,
    table_classes=[],
    migration_dependencies=["guiche.piccolo_app"],
    commands=[],
)
