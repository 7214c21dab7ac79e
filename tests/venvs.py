"""Fresh virtual environments for tests that install real distributions with pip."""

from __future__ import annotations

import site
import subprocess
import venv
from pathlib import Path

__all__ = ["layered_venv"]


def layered_venv(path: Path) -> Path:
    """A virtual environment on top of this one: this one's packages stay importable.

    Returns its python. What a test installs there stays out of the test environment.
    """
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(path)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # A .pth line that starts with `import` runs: this environment's site-packages (with
    # its own .pth files: editable installs) come after the new environment's.
    lines = [f"import site; site.addsitedir({p!r})" for p in site.getsitepackages()]
    (Path(purelib) / "_outer_environment.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return python
