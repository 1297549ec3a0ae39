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
        except UnicodeDecodeError:
            # Never echo the decoder's message: it quotes bytes of the secret.
            raise TailscaleError(
                f"the auth key file {str(path)!r} is not UTF-8 text; write the key itself "
                "into it (tskey-... or a headscale pre-auth key)"
            ) from None
        except OSError as exc:
            # The file name is not secret; its content is and never appears here.
            raise TailscaleError(
                f"cannot read the auth key file {str(path)!r}: {exc.strerror or exc}; "
                "check the path and its permissions"
            ) from None
    if not key:
        raise TailscaleError(
            "the auth key is empty; create one in the admin console (or "
            "`headscale preauthkeys create`) and pass it, or `file:/path` to a file holding it"
        )
    return key
