"""PyInstaller entry point for the single-file `tailnet-agent` executable."""

import sys

from agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
