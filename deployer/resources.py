"""Where the files that ship with deployer (the HTML pages, the nginx template) are.

In the repository they live in `templates/` at the top; an installed wheel carries the same
files as `deployer/templates/` (pyproject.toml maps one onto the other). A source checkout and
an editable install have no `deployer/templates/`, so the repository's copy is used.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def templates_dir(package_dir: Path = PACKAGE_DIR) -> Path:
    """The templates folder: the installed package's copy, else the source checkout's."""
    installed = package_dir / "templates"
    if installed.is_dir():
        return installed
    return package_dir.parent / "templates"


TEMPLATES = templates_dir()
