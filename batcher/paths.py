"""Where a run writes, checked before anything is sent.

Every file batcher writes (the results file, its journal, lock and completion
mark, ``--failed-out``, ``--summary-json``, ``--log-file``) must be a file of its
own: not the input, not one another, not a folder, in a folder that exists.
Each is compared by the file it resolves to, so a symbolic link cannot make two
names one file. Files replaced atomically (results, failed-out, summary) replace
a link rather than write through it; files opened in place (the lock, the log,
the journal) refuse a link outright (``O_NOFOLLOW``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from batcher.errors import UsageError


def check_outputs(input_path: Path, outputs: Mapping[str, Path | None]) -> None:
    """Refuse (``UsageError``, exit 2) outputs that would clobber the input or each other."""
    seen: dict[Path, str] = {input_path.resolve(): "the input"}
    for what, path in outputs.items():
        if path is None:
            continue
        if path.is_dir():
            raise UsageError(f"{what} {str(path)!r} is a folder; name a file")
        if not path.parent.is_dir():
            raise UsageError(f"{what}'s folder {str(path.parent)!r} does not exist")
        real = path.resolve()
        if real in seen:
            raise UsageError(
                f"{what} {str(path)!r} would overwrite {seen[real]}; name another file"
            )
        seen[real] = what
