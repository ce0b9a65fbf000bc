"""The plugin's Piccolo app: its table and migrations."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from guiche_baileys_bridge.tables import BaileysSession

APP_CONFIG = AppConfig(
    app_name="baileys_bridge",
    migrations_folder_path=str(Path(__file__).parent / "migrations"),
    table_classes=[BaileysSession],
    migration_dependencies=[],
    commands=[],
)
