"""`guiche new channel NAME`: a working, installable channel plugin to start from.

The templates (`scaffold/channel/`, shipped in the wheel) are a complete plugin for a
small JSON provider, with its tests: the strict contract suite (`guiche.contract`) and a
fake provider. Generated as is, it installs, loads and passes the suite; a third party
then changes the adapter to speak their provider's API, as datasette's and pytest's
plugin templates are used.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).parent / "channel"
NAME = re.compile(r"^[a-z][a-z0-9_]{1,30}$")


class ScaffoldError(ValueError):
    """The name is not usable or the target exists (the message says which)."""


def new_channel_plugin(name: str, parent: Path) -> Path:
    """Write `guiche-<name>/` under `parent`; returns its path. Never overwrites."""
    if not NAME.fullmatch(name):
        raise ScaffoldError(
            f"{name!r}: use 2-31 lowercase letters, digits or _ , starting with a letter"
        )
    target = parent / f"guiche-{name.replace('_', '-')}"
    if target.exists():
        raise ScaffoldError(f"{target} already exists")
    title = name.replace("_", " ").title()
    camel = title.replace(" ", "")
    values = {
        "name": name,
        "package": f"guiche_{name}",
        "title": title,
        "adapter": f"{camel}Adapter",
        "config": f"{camel}Config",
        "header": f"X-{camel}-Signature",
    }
    for template in sorted(TEMPLATES.rglob("*.tmpl")):
        relative = template.relative_to(TEMPLATES).with_suffix("")
        parts = [values["package"] if part == "package" else part for part in relative.parts]
        path = target.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template.read_text()).substitute(values))
    return target
