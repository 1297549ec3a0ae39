"""Item 5: path parameters are checked as the host resolves them (symlinks followed).

Operators use narrow roots exactly where other users can write: here a directory on
the real sshd host where anyone may plant symlinks.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.access.identity import Identity
from agent.errors import PathRefused
from tests.support.services import ServiceFactory
from whitelist import load_catalog

ALICE = Identity(login="alice@example.com", node="laptop.tailnet.test")


@pytest.fixture
def root() -> Iterator[Path]:
    # Not under pytest's 0700 tmp dirs: the sshd test user must be able to read it.
    base = Path(tempfile.mkdtemp(prefix="tnagent-roots-"))
    base.chmod(0o755)
    logs = base / "srv" / "app" / "logs"
    (logs / "nginx").mkdir(parents=True)
    for directory in (base / "srv", base / "srv" / "app", logs, logs / "nginx"):
        directory.chmod(0o755)
    (logs / "app.log").write_text("inside\n")
    (logs / "nginx" / "error.log").write_text("nginx inside\n")
    for f in (logs / "app.log", logs / "nginx" / "error.log"):
        f.chmod(0o644)
    # What another user of the host could plant in a root it may write to:
    (logs / "esc").symlink_to("/etc")  # a directory outside
    (logs / "passwd").symlink_to("/etc/passwd")  # a file outside
    (logs / "hop").symlink_to(logs / "esc")  # a link to a link outside
    (logs / "up").symlink_to(base / "srv")  # a parent of the root
    (logs / "self").symlink_to(logs)  # a loop back inside: fine
    (logs / "current").symlink_to(logs / "nginx")  # a link that stays inside: fine
    yield logs
    shutil.rmtree(base, ignore_errors=True)


def catalog_file(tmp_path: Path, logs: Path) -> Path:
    path = tmp_path / "logs.yaml"
    path.write_text(f"""
commands:
  read_log:
    description: Show a log file under the application's log directory.
    category: Logs
    template: "cat -- {{path}}"
    parameters:
      path:
        type: path
        description: The log file.
        roots: ["{logs}"]
""")
    return path


async def test_symlinks_out_of_a_narrow_root_are_refused_on_the_host(
    make_service: ServiceFactory, tmp_path: Path, root: Path
) -> None:
    service = make_service(identity_concurrency=64, rate_burst=1000)
    service.catalog = load_catalog([catalog_file(tmp_path, root)])
    inside = {"app.log": "inside\n", "nginx/error.log": "nginx inside\n",
              "current/error.log": "nginx inside\n", "self/self/app.log": "inside\n"}
    for name, text in inside.items():
        result = await service.run("read_log", {"path": f"{root}/{name}"}, host=None,
                                   identity=ALICE)
        assert (result.exit_status, result.stdout) == (0, text), result.stderr
    escapes = ["esc/passwd", "esc/hostname", "passwd", "hop/passwd", "hop/../passwd",
               "up/app/logs/esc/passwd", "up/../../../../etc/passwd", "self/esc/shadow",
               "current/../esc/passwd", "esc", "up"]
    escapes = [e for e in escapes if ".." not in e]  # `..` is refused on the text already
    attempts = [f"{root}/{e}" for e in escapes] * 10  # at volume: 100 tries
    for path in attempts:
        with pytest.raises(PathRefused) as refused:
            await service.run("read_log", {"path": path}, host=None, identity=ALICE)
        message = str(refused.value)
        assert f"{path} resolves to " in message and "outside the allowed roots" in message
        assert "nothing ran" in message and "root:x:0:0" not in message
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    ends = [r for r in records if r["event"] == "end"]
    assert sum(1 for r in ends if r["outcome"] == "refused") == len(attempts)
    assert sum(1 for r in ends if r["outcome"] == "ran") == len(inside)
