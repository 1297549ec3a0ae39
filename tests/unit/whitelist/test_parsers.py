"""A catalog command's `parser:`: read and checked at load, named in the default catalog."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from whitelist import CatalogError, load_catalog
from whitelist.parsers import PARSERS

# The default catalog's disk, memory, uptime, services and processes commands (issue 22).
DEFAULT_PARSERS = {
    "disk_usage": "df", "memory_usage": "free", "uptime": "uptime",
    "failed_services": "systemctl", "top_processes": "ps", "top_memory_processes": "ps",
    "os_release": "os_release",
}


def write(tmp_path: Path, parser: str) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(textwrap.dedent(f"""
        commands:
          disks:
            description: Disks as data.
            category: Test
            template: "df -P"
            parser: {parser}
    """))
    return path


def test_the_default_catalog_names_its_parsers() -> None:
    catalog = load_catalog()
    named = {c.name: c.parser.name for c in catalog if c.parser is not None}
    assert named == DEFAULT_PARSERS
    assert catalog.get("hostname").parser is None


def test_a_parser_is_read_from_an_extra_catalog(tmp_path: Path) -> None:
    command = load_catalog([write(tmp_path, "df")], include_default=False).get("disks")
    assert command.parser is PARSERS["df"]
    assert "use_percent" in command.parser.fields


@pytest.mark.parametrize("parser", ["jc_df", "DF", "[df]", "1", "yes"])
def test_an_unknown_parser_is_a_load_error_naming_the_parsers(tmp_path: Path,
                                                               parser: str) -> None:
    with pytest.raises(CatalogError) as caught:
        load_catalog([write(tmp_path, parser)], include_default=False)
    error = caught.value
    assert (error.command, error.field, error.line) == ("disks", "parser", 7)
    assert "unknown parser" in error.problem
    assert "df, free, uptime, ps, systemctl, os_release" in error.problem


def test_every_parser_names_its_key_among_its_fields() -> None:
    for parser in PARSERS.values():
        assert parser.key in parser.fields, parser.name
        assert parser.reads and parser.fields
