"""Assemble the container image's root filesystem from dist/tailnet-agent and this machine.

    python build/image_root.py dist/tailnet-agent build/work/image

writes CONTEXT/rootfs (copied to / by build/Containerfile) and CONTEXT/state (the
volume's mount point, owned by the agent's user). No base image exists here, so the
root is built from files this machine already has (Debian packages):

- the executable, at /usr/local/bin/tailnet-agent;
- the shared libraries it and its bundle need from the system: PyInstaller bundles
  everything except the C library family, so the bundle is read with PyInstaller's
  own archive reader and `ldd` is asked about every ELF file in it (with the bundle
  first on the search path); whatever resolves outside the bundle is copied, plus
  the dynamic loader;
- CA certificates (Debian's ca-certificates bundle) for TLS to the control server and
  the Messages API;
- /etc/passwd and /etc/group with root and the unprivileged user the agent runs as,
  a minimal nsswitch.conf and hosts, and a world-writable /tmp (sticky) where the
  executable unpacks itself: it must allow executing files;
- the image's SBOM (CycloneDX JSON) at IMAGE_SBOM: the components of the SBOM inside the
  executable (read from its bundle) and the system packages owning the files copied here
  (build/sbom.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

UID = GID = 10001
USER = "tailnet-agent"
STATE = "/var/lib/tailnet-agent"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA_SOURCE = "/usr/share/ca-certificates/mozilla"  # what update-ca-certificates made it from
IMAGE_SBOM = "/usr/share/doc/tailnet-agent/sbom.cdx.json"
BUNDLED_SBOM = "tailnet-agent.cdx.json"  # agent.commands.version.BUNDLED_SBOM


def fail(message: str) -> None:
    print(f"build/image_root.py: {message}", file=sys.stderr)
    sys.exit(1)


def bundled_sbom(executable: Path) -> bytes:
    from PyInstaller.archive.readers import CArchiveReader

    data = CArchiveReader(str(executable)).extract(BUNDLED_SBOM)
    if data is None:
        fail(f"{executable} carries no SBOM ({BUNDLED_SBOM}); rebuild it with `make dist`")
    return data


def bundle_elf_files(executable: Path, into: Path) -> list[Path]:
    """Write the ELF files inside the onefile executable to `into`; return their paths."""
    try:
        from PyInstaller.archive.readers import CArchiveReader
    except ImportError:
        fail("PyInstaller is needed to read the executable's bundle; run "
             "`pip install -e '.[build]'` (make dist does) or set PYTHON to that Python")
    archive = CArchiveReader(str(executable))
    found: list[Path] = []
    for name in archive.toc:
        data = archive.extract(name)
        if data is None or not data.startswith(b"\x7fELF"):
            continue
        path = into / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o755)
        found.append(path)
    return found


def system_libraries(executable: Path, files: list[Path], bundle: Path) -> set[str]:
    """Paths of the libraries (and the loader) the executable (the bootloader, which runs
    before anything is unpacked) and the bundle's `files` load from outside the bundle."""
    needed: set[str] = set()
    plain = {**os.environ, "LC_ALL": "C"}
    plain.pop("LD_LIBRARY_PATH", None)
    in_bundle = {**plain, "LD_LIBRARY_PATH": str(bundle)}
    for path in [executable, *files]:
        done = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False,
                              env=plain if path == executable else in_bundle)
        if done.returncode != 0:
            continue  # static (tailscaled) or not a program/library
        for line in done.stdout.splitlines():
            words = line.split()
            if "not found" in line:
                fail(f"{path.name} needs {words[0]}, which this machine does not have")
            target = words[2] if "=>" in words and len(words) > 2 else words[0]
            if target.startswith("/") and not target.startswith(str(bundle)):
                needed.add(target)
    return needed


def copy_file(source: Path, root: Path, target: str, mode: int = 0o644) -> None:
    dest = root / target.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source.resolve(), dest)
    dest.chmod(mode)


def write(root: Path, target: str, text: str, mode: int = 0o644) -> None:
    dest = root / target.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    dest.chmod(mode)


def build_root(executable: Path, context: Path) -> None:
    if context.exists():
        shutil.rmtree(context)
    root = context / "rootfs"
    root.mkdir(parents=True)
    copy_file(executable, root, "/usr/local/bin/tailnet-agent", 0o755)
    with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
        bundle = Path(tmp)
        libraries = system_libraries(executable, bundle_elf_files(executable, bundle), bundle)
    for library in sorted(libraries):
        copy_file(Path(library), root, library, 0o755)
        print(f"  {library}", file=sys.stderr)
    if not CA_BUNDLE.is_file():
        fail(f"{CA_BUNDLE} is missing; install Debian's ca-certificates package")
    copy_file(CA_BUNDLE, root, str(CA_BUNDLE))
    write(root, "/etc/passwd", f"root:x:0:0:root:/root:/nonexistent\n"
          f"{USER}:x:{UID}:{GID}:tailnet-agent:{STATE}:/nonexistent\n")
    write(root, "/etc/group", f"root:x:0:\n{USER}:x:{GID}:\n")
    write(root, "/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n")
    write(root, "/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n")
    # The working directory: mount configuration here (a .env in it is read).
    (root / "etc" / "tailnet-agent").mkdir(mode=0o755)
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    state = context / "state"
    state.mkdir()
    state.chmod(0o700)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import sbom  # build/sbom.py

    count = sbom.write(sbom.image_bom(bundled_sbom(executable), [*libraries, CA_SOURCE]),
                       root / IMAGE_SBOM.lstrip("/"))
    print(f"SBOM: {IMAGE_SBOM} ({count} components)", file=sys.stderr)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python build/image_root.py dist/tailnet-agent CONTEXT_DIR", file=sys.stderr)
        return 2
    executable, context = Path(argv[0]), Path(argv[1])
    if not (executable.is_file() and os.access(executable, os.X_OK)):
        fail(f"{executable} is not an executable file; build it first with `make dist`")
    build_root(executable, context)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
