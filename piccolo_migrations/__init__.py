"""Core's migrations. Shipped in the wheel as `guiche.piccolo_migrations`.

File names carry the `guiche_` prefix because Piccolo imports migration modules by bare
name, so names must be unique across every installed app.
"""
