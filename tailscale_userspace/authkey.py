"""Reading an auth key given literally or as `file:/path` (keeps it out of argv and env)."""

from __future__ import annotations

from pathlib import Path

from .errors import TailscaleError

_FILE_PREFIX = "file:"


def read_auth_key(value: str) -> str:
    if not value.startswith(_FILE_PREFIX):
        key = value.strip()
    else:
        path = Path(value[len(_FILE_PREFIX) :]).expanduser()
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            # The file name is not secret; its content is and never appears here.
            raise TailscaleError(
                f"cannot read the auth key file {str(path)!r}: {exc.__class__.__name__}: "
                f"{getattr(exc, 'strerror', None) or exc}; check the path and its permissions"
            ) from None
    if not key:
        raise TailscaleError(
            "the auth key is empty; create one in the admin console (or "
            "`headscale preauthkeys create`) and pass it, or `file:/path` to a file holding it"
        )
    return key
