"""Parameter types and the fixed patterns of the name-like types."""

from __future__ import annotations

import enum


class ParamType(enum.StrEnum):
    STRING = "string"
    ENUM = "enum"
    INTEGER = "integer"
    PATH = "path"
    UNIT = "unit"
    CONTAINER = "container"


# systemd unit names: ASCII letters, digits and ":_.@-". Suffixes such as
# .service .socket .timer .mount .target .path .slice .scope .device .swap
# .automount are covered by the character class; systemctl/journalctl append
# ".service" to a bare name. The first character excludes "-" (option
# injection), "." and "@", which systemd never accepts there anyway. No glob
# characters: systemctl would expand "*" itself.
UNIT_PATTERN = r"[A-Za-z0-9_:][A-Za-z0-9:_.@-]*"

# Docker container names and IDs, as the docker daemon validates them.
CONTAINER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
