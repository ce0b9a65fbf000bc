"""The reports plugin's Piccolo app: its migrations (the tables are written in SQL)."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

APP_CONFIG = AppConfig(
    app_name="reports",
    migrations_folder_path=str(Path(__file__).parent / "migrations"),
    table_classes=[],
    migration_dependencies=["guiche.piccolo_app"],
    commands=[],
)
