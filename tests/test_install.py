"""A plain install (not editable) works from any folder: the demo's sample ships inside the
package, and ``batcher --version`` prints the one version there is."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import batcher

CHECKOUT = Path(__file__).resolve().parent.parent


def test_version_flag_output() -> None:
    """`python -m batcher --version` prints `batcher <version>` on stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "batcher", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.stdout.strip() == f"batcher {batcher.__version__}"


def test_demo_sample_is_package_data() -> None:
    """The demo's sample lives inside the package and pyproject ships it as package data."""
    from batcher.demo import DEMO_INPUT  # noqa: PLC0415

    assert DEMO_INPUT.is_file()
    assert DEMO_INPUT.parent.parent == Path(batcher.__file__).parent
    assert '"samples/*.csv"' in (CHECKOUT / "pyproject.toml").read_text(encoding="utf-8")


def test_plain_install_runs_the_demo_from_an_unrelated_folder(tmp_path: Path) -> None:
    """A wheel built from the checkout and installed (not editable) into a fresh venv: from
    another folder, `batcher demo` exits 0 and `batcher --version` prints the version.

    No network: the wheel is built with this environment's setuptools and installed with
    --no-deps; the new venv borrows this environment's dependencies through a .pth line
    (a plain path entry, so this checkout's editable install is not picked up with them).
    """
    # A copy of what the wheel is built from, so the build leaves nothing in the checkout.
    tree = tmp_path / "tree"
    shutil.copytree(
        CHECKOUT / "batcher", tree / "batcher", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(CHECKOUT / name, tree / name)
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", dist, tree],
        capture_output=True, text=True, timeout=300, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("batcher-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    installed = subprocess.run(
        [bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel],
        capture_output=True, text=True, timeout=300, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    site = subprocess.run(
        [bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, timeout=60, check=True, stdin=subprocess.DEVNULL,
    ).stdout.strip()  # fmt: skip
    ours = sysconfig.get_path("purelib")
    (Path(site) / "zz_borrowed_dependencies.pth").write_text(ours + "\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AELYST_API_TOKEN")}

    def batcher_cmd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [bin_dir / "batcher", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=elsewhere,
            env=env,
            stdin=subprocess.DEVNULL,
        )

    version = batcher_cmd("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"batcher {batcher.__version__}"
    demo = batcher_cmd("demo", "--no-progress")
    assert demo.returncode == 0, demo.stderr
    assert "demo.results.csv" in demo.stdout
    # The installed copy ran, not this checkout.
    where = subprocess.run(
        [bin_dir / "python", "-c", "import batcher.demo as d; print(d.DEMO_INPUT)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=elsewhere,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert not Path(where.stdout.strip()).is_relative_to(CHECKOUT)


def test_readme_first_screen_keeps_the_two_set_up_commands() -> None:
    """The README's first code block still installs (editable, with dev) and runs the demo,
    then runs the tests: the two commands a new user copies."""
    readme = (CHECKOUT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line for line in first_block.splitlines() if line and not line.startswith("#")]
    assert commands == [
        'python3 -m venv .venv && .venv/bin/pip install -e ".[dev]" && .venv/bin/batcher demo',
        ".venv/bin/python -m pytest",
    ]
    assert readme.index("```sh") < readme.index("## ")  # before the first section
