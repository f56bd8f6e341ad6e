"""The local state directory (``.reconciler/``) and keeping it out of git.

``reconcile`` is usually run from the flows repository, so whatever it writes under the
working directory — the default SQLite database and the local mail sink, whose files
are rendered e-mails and SMS with personal data — would show up in ``git status`` and
could be committed. Every directory reconcile creates for such files gets a
``.gitignore`` of ``*`` (it ignores itself too): nothing in it is ever offered to git.
A ``.gitignore`` already there is left as it is.
"""

from __future__ import annotations

from pathlib import Path

STATE_DIRECTORY = Path(".reconciler")  # the default SQLite database and the local sink live here
GITIGNORE = "# Written by reconcile: state and rendered messages (personal data), never for git.\n*\n"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed, with a ``.gitignore`` of ``*`` in it
    unless it has one; returns ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():
        try:
            with ignore.open("x", encoding="utf-8") as handle:
                handle.write(GITIGNORE)
        except FileExistsError:  # another process wrote it first
            pass
    return path
