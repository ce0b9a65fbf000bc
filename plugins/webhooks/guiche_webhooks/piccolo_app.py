"""The plugin's Piccolo app: no table classes (queries are SQL), its migrations folder."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

APP_CONFIG = AppConfig(
    app_name="webhooks",
    migrations_folder_path=str(Path(__file__).parent / "migrations"),
    table_classes=[],
    migration_dependencies=["guiche.piccolo_app"],
    commands=[],
)
