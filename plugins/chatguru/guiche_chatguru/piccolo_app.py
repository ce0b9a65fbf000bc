"""The plugin's Piccolo app: its tables and the migrations folder shipped in the package."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from guiche_chatguru.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="chatguru",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=list(TABLES),
    migration_dependencies=["guiche.piccolo_app"],
    commands=[],
)
