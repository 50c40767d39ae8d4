"""Set up LiteLLM's own proxy server in a throwaway virtualenv, outside the project's environment
(its `[proxy]` extra pins packages the project must not inherit), for section C's peer:

    python -m benchmarks.litellm_peer            # creates it at the default location, prints the executable
    python -m benchmarks.run_all --litellm-bin <printed path>

`run_all` looks at the default location by itself.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import venv
from pathlib import Path

__all__ = ["DEFAULT_VENV", "default_bin", "setup"]

REQUIREMENT = "litellm[proxy]==1.106.2"
DEFAULT_VENV = Path.home() / ".cache" / "memory-runtime-bench" / "litellm-1.106.2"


def default_bin(folder: Path = DEFAULT_VENV) -> Path:
    return folder / "bin" / "litellm"


def setup(folder: Path = DEFAULT_VENV) -> Path:
    if not (folder / "bin" / "python").exists():
        venv.EnvBuilder(with_pip=True).create(folder)
    # cwd: the venv itself, so pip does not see this project (its egg-info) on the path.
    subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", REQUIREMENT],
                   check=True, cwd=folder)
    return default_bin(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    args = parser.parse_args(argv)
    print(setup(args.venv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
