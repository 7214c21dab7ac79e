"""A plugin installed by pip (into a --target folder) is found through a real scan."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

from tests.core.conftest import run_python

FIXTURE = Path(__file__).parent / "fixtures" / "vb_pip_plugin"
DIST_INFO = "vb_pip_plugin-0.3.0.dist-info"


def build_wheel(out: Path) -> Path:
    """Pack the fixture into a wheel; a wheel is a zip file, no build backend needed."""
    files: dict[str, bytes] = {
        f"vb_pip_plugin/{p.name}": p.read_bytes()
        for p in sorted((FIXTURE / "vb_pip_plugin").glob("*.py"))
    }
    for p in sorted((FIXTURE / "dist-info").iterdir()):
        files[f"{DIST_INFO}/{p.name}"] = p.read_bytes()
    files[f"{DIST_INFO}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: tests/core\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{DIST_INFO}/RECORD,,")
    files[f"{DIST_INFO}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = out / "vb_pip_plugin-0.3.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return wheel


def test_a_pip_installed_plugin_is_discovered_and_builds(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    target = tmp_path / "target"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    assert (target / DIST_INFO / "INSTALLER").read_text().strip() == "pip"
    code = textwrap.dedent(
        """
        import sys
        from vertebra.model.registry import BACKBONES
        assert "PipNet" in BACKBONES.names("pip*"), BACKBONES.names()
        origin = BACKBONES.origin("PipNet")
        assert "vb_pip_plugin" not in sys.modules  # found from metadata alone
        print(origin.distribution, origin.version, origin.value, origin.loaded)
        net = BACKBONES.build({"NAME": "vb-pip-plugin:PipNet", "WIDTH": 3})
        print(type(net).__module__, net.fc.in_features, BACKBONES.origin("PipNet").loaded)
        """
    )
    result = run_python(code, path=[target], env={"VERTEBRA_PLUGINS": "vb-pip-plugin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "vb-pip-plugin 0.3.0 vb_pip_plugin.parts:PipNet False",
        "vb_pip_plugin.parts 3 True",
    ]
