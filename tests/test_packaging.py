"""hostctl as a user installs it: the sdist, a wheel built from it (with the Frida agent bundle
compiled into the package), a fresh venv outside the source tree, and the documented audits run
from an empty folder.

The verdicts are the ones the shipped profiles document (``audit_expectations``) and docs/audit.md
states: the July 2014 build FAILs five checks (exit 3); the 2014-08-10 OTA PASSes all eleven (exit
0) with the deterministic-encryption warning.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from hostctl import agent

REPO = Path(__file__).resolve().parent.parent
# what an sdist is made from; the copy keeps the build from writing into the checkout (egg-info,
# build/) while other tests run from it
SOURCE_ITEMS = (
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "Makefile",
    "mkdocs.yml",
    "hostctl",
    "agent",
    "hw_tests",
    "docs",
)
IGNORE = shutil.ignore_patterns(
    "__pycache__", "node_modules", "_agent.js", "*.egg-info", "*.tmp", "*.so", "_flowwalk.c"
)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "HOSTCTL_AGENT_DIR",
            "HOSTCTL_AGENT_BUNDLE",
            "PYTHONPATH",
            "ANDROID_ADB_SERVER_PORT",
            "ANDROID_SERIAL",
            "VIRTUAL_ENV",
            "PYTEST_XDIST_WORKER",
            "PYTEST_CURRENT_TEST",
        )
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pkg")
    src = root / "src"
    src.mkdir()
    for name in SOURCE_ITEMS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=IGNORE)
        elif path.exists():
            shutil.copy2(path, src / name)
    dist = root / "dist"
    # sdist first, then the wheel from the unpacked sdist (python -m build's default): the agent
    # is compiled from the sdist's own agent/ sources and lock file
    r = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=900,
        env=_clean_env(),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "hostctl agent: compiling" in r.stderr + r.stdout, "the wheel's agent was not built from the sdist"
    (sdist,) = dist.glob("hostctl-*.tar.gz")
    (wheel,) = dist.glob("hostctl-*.whl")
    return {"root": root, "sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="module")
def installed(built: dict[str, Path]) -> Path:
    env_dir = built["root"] / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = env_dir / "bin" / "python"
    r = subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", str(built["wheel"])],
        capture_output=True,
        text=True,
        timeout=900,
        env=_clean_env(),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return env_dir


@pytest.mark.slow
def test_sdist_carries_agent_sources_lock_file_and_hw_tests(built: dict[str, Path]) -> None:
    with tarfile.open(built["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in (
        "agent/src/index.ts",
        "agent/package.json",
        "agent/package-lock.json",
        "agent/tsconfig.json",
        "hw_tests/test_checks.py",
        "setup.py",
        "MANIFEST.in",
        "hostctl/wire/_flowwalk.pyx",
    ):
        assert needed in names, f"the sdist lacks {needed}"
    assert not any(n.endswith(".so") for n in names)  # compiled for the machine that builds the wheel
    assert not any("node_modules" in n for n in names)
    assert "agent/_agent.js" not in names  # built from the sources, never shipped stale


@pytest.mark.slow
def test_wheel_carries_the_agent_bundle(built: dict[str, Path]) -> None:
    with zipfile.ZipFile(built["wheel"]) as whl:
        bundle = whl.read("hostctl/_agent.js").decode()
        names = whl.namelist()
    # the compiled agent: its RPC exports and the Java bridge bundled in from npm
    assert "startTrace" in bundle and "frida-java-bridge" in bundle
    assert "hostctl/emulator/profiles/miui-v5-2014-07.yaml" in names
    # the wire analyser's compiled fast path (Cython, from the sdist's .pyx)
    assert any(n.startswith("hostctl/wire/_flowwalk.") and n.endswith(".so") for n in names), names


def _run_installed(installed: Path, cwd: Path, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(installed / "bin" / "hostctl"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=_clean_env(HOSTCTL_HOME=str(home)),
    )


@pytest.mark.slow
def test_installed_hostctl_finds_its_packaged_agent(installed: Path, tmp_path: Path) -> None:
    r = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import hostctl.agent as a; print(a.bundle_path()); print(len(a.source()));"
            "import hostctl.wire.flows as f; print(f.COMPILED)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=_clean_env(),
    )
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.splitlines()[0])
    assert path.is_relative_to(installed) and path.name == "_agent.js"
    assert int(r.stdout.splitlines()[1]) > 10_000
    assert r.stdout.splitlines()[2] == "True", "the installed wheel runs the wire fast path in Python"


@pytest.mark.slow
@pytest.mark.parametrize(
    "profile, exit_status, counts",
    [
        ("miui-v5-2014-07", 3, {"PASS": 6, "FAIL": 5, "NOT-TESTABLE": 0}),
        ("miui-v5-2014-08-10", 0, {"PASS": 11, "FAIL": 0, "NOT-TESTABLE": 0}),
    ],
)
def test_installed_wheel_audits_the_emulated_lab_as_documented(
    installed: Path, tmp_path: Path, profile: str, exit_status: int, counts: dict[str, int]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = _run_installed(installed, empty, "audit", "--emulator", "--profile", profile, "--json", home=tmp_path / "home")
    assert r.returncode == exit_status, r.stderr[-4000:]
    report = json.loads(r.stdout)
    assert {k: report["summary"][k] for k in counts} == counts, [
        (c["id"], c["status"], c["reason"]) for c in report["checks"]
    ]
    warnings = [w for c in report["checks"] for w in c["warnings"]]
    if profile.endswith("08-10"):
        assert any("deterministic" in w for w in warnings), warnings
    # the run folder went to ./hostctl-runs of the folder it was run from
    assert (empty / "hostctl-runs" / f"emulator-{profile}" / "latest" / "report.json").is_file()


def test_agent_dir_override_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTCTL_AGENT_DIR", str(tmp_path))
    assert agent.bundle_path() == tmp_path / "_agent.js"
    with pytest.raises(agent.AgentBundleError, match="HOSTCTL_AGENT_DIR"):
        agent.source()
    (tmp_path / "_agent.js").write_text("rpc.exports = {};")
    assert agent.source() == "rpc.exports = {};"


def test_build_for_package_takes_a_prebuilt_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prebuilt = tmp_path / "prebuilt.js"
    prebuilt.write_text("// prebuilt")
    monkeypatch.setenv("HOSTCTL_AGENT_BUNDLE", str(prebuilt))
    out = agent.build_for_package(tmp_path / "no-agent-here", tmp_path / "pkg" / "_agent.js", log=lambda m: None)
    assert out.read_text() == "// prebuilt"
    monkeypatch.setenv("HOSTCTL_AGENT_BUNDLE", str(tmp_path / "missing.js"))
    with pytest.raises(agent.AgentBundleError, match="no such file"):
        agent.build_for_package(tmp_path, tmp_path / "x.js", log=lambda m: None)


def test_npm_missing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on it
    with pytest.raises(agent.AgentBundleError, match="npm is not installed.*apt-get install npm"):
        agent.npm_ci(tmp_path)


@pytest.mark.slow
def test_installed_hostctl_demo_checks_the_audit_against_its_profile(installed: Path, tmp_path: Path) -> None:
    """`hostctl demo` is `make demo` for a user without the checkout (one profile here: the two
    audits themselves are the test above)."""
    r = _run_installed(installed, tmp_path, "demo", "--profile", "miui-v5-2014-08-10", "--json", home=tmp_path / "home")
    assert r.returncode == 0, r.stderr[-4000:]
    doc = json.loads(r.stdout)
    assert doc["ok"] is True
    assert [(p["profile"], p["exit_status"], p["problems"]) for p in doc["profiles"]] == [("miui-v5-2014-08-10", 0, [])]
    assert "PASS 11" in r.stderr and "The audit read as their profiles document" in r.stderr


def _make(tmp_path: Path, *args: str, path: str) -> subprocess.CompletedProcess[str]:
    """`make` on a copy of the Makefile in an empty folder (nothing installed there yet)."""
    shutil.copy2(REPO / "Makefile", tmp_path / "Makefile")
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make on this host")
    return subprocess.run(
        [make, "-C", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(_clean_env(), PATH=path),
    )


def test_make_says_to_install_npm_before_installing_anything(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with Python and without npm
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    work = tmp_path / "work"
    work.mkdir()
    r = _make(work, "demo", path=str(bin_dir))
    assert r.returncode != 0
    assert "npm is missing" in r.stderr and "apt-get install npm" in r.stderr
    assert not (work / ".venv").exists()  # said before the 46 s of installing


def test_make_says_which_python_it_needs(tmp_path: Path) -> None:
    r = _make(tmp_path, "demo", "PYTHON=/nonexistent/python3", path=os.environ.get("PATH", ""))
    assert r.returncode != 0
    assert "needs Python 3.11 or newer" in r.stderr and "not found" in r.stderr
    assert not (tmp_path / ".venv").exists()
