#!/usr/bin/env bash
# Idempotently install the system packages shotfarm needs to build, test and run.
# Installs only what is missing; runs `apt-get update` at most once, and only if
# something actually needs installing. Safe to run as root with no stdin (CI).
set -euo pipefail

export PATH="$HOME/.cargo/bin:$PATH"

# `--test`: also what only the test suite needs (the OpenAPI test's schemathesis, the storage
# tests' moto).
FOR_TESTS=false
[[ ${1:-} == --test ]] && FOR_TESTS=true

log() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: ERROR: %s\n' "$*" >&2; exit 1; }

# Each entry is one `apt-get install` invocation (space-separated package list).
# Recommended packages are installed too: that is the configuration the project
# is tested with (chromium's recommends bring fonts and the libraries it probes).
# fonts-liberation (metric-compatible Arial/Times/Courier) is requested explicitly.
missing=()
labels=()

if [[ -x /usr/bin/chromium ]]; then
    log "found chromium: /usr/bin/chromium ($(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown'))"
else
    missing+=("chromium fonts-liberation")
    labels+=("chromium")
fi

# The default engine: the old headless shell (no browser UI; lighter per capture). Launched
# from /usr/lib/chromium directly (Debian's /usr/bin wrapper does not exec).
if [[ -x /usr/lib/chromium/chromium-headless-shell ]]; then
    log "found chromium-headless-shell: /usr/lib/chromium/chromium-headless-shell"
else
    missing+=("chromium-headless-shell")
    labels+=("chromium-headless-shell")
fi

if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    log "found redis: $(command -v redis-server) ($(redis-server --version 2>/dev/null | awk '{print $3}' | sed 's/^v=//'))"
else
    missing+=("redis-server redis-tools")
    labels+=("redis-server/redis-cli")
fi

# The `timezone` capture option checks names against the host's time zone database.
if [[ -f /usr/share/zoneinfo/Europe/Berlin ]]; then
    log "found tzdata: /usr/share/zoneinfo"
else
    missing+=("tzdata")
    labels+=("tzdata")
fi

# block_ads and block_trackers: EasyList and EasyPrivacy, as Debian's uBlock Origin package
# ships them (filters.ad_lists / filters.tracker_lists point there by default).
EASYLIST_DIR=/usr/share/chromium/extensions/ublock-origin/assets/thirdparties/easylist
if [[ -f $EASYLIST_DIR/easylist.txt && -f $EASYLIST_DIR/easyprivacy.txt ]]; then
    log "found EasyList and EasyPrivacy: $EASYLIST_DIR"
else
    missing+=("--no-install-recommends webext-ublock-origin-chromium")
    labels+=("EasyList/EasyPrivacy (webext-ublock-origin-chromium)")
fi

# The tests run the credits contract's curl and Python snippets.
if command -v curl >/dev/null 2>&1; then
    log "found curl: $(command -v curl)"
else
    missing+=("curl")
    labels+=("curl")
fi

if python3 -c 'import requests' >/dev/null 2>&1 || /usr/bin/python3 -c 'import requests' >/dev/null 2>&1; then
    log "found python3 with requests"
else
    missing+=("python3 python3-requests")
    labels+=("python3-requests")
fi

# The signed-links test makes links with the README's Node and shell (openssl) snippets.
if $FOR_TESTS; then
    if command -v node >/dev/null 2>&1; then
        log "found node: $(command -v node)"
    else
        missing+=("--no-install-recommends nodejs")
        labels+=("nodejs")
    fi
    if command -v openssl >/dev/null 2>&1; then
        log "found openssl: $(command -v openssl)"
    else
        missing+=("openssl")
        labels+=("openssl")
    fi
fi

# The failover tests run a primary, replicas and Sentinels of their own (Debian's redis-sentinel).
if $FOR_TESTS; then
    if command -v redis-sentinel >/dev/null 2>&1; then
        log "found redis-sentinel: $(command -v redis-sentinel)"
    else
        missing+=("--no-install-recommends redis-sentinel")
        labels+=("redis-sentinel")
    fi
fi

# The OpenAPI test runs schemathesis (from PyPI) in a venv of its own: Debian's python is
# externally managed, so pip installs nothing system-wide.
if ! $FOR_TESTS || /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    $FOR_TESTS && log "found python3-venv"
else
    missing+=("python3-venv")
    labels+=("python3-venv")
fi

if command -v cc >/dev/null 2>&1; then
    log "found C toolchain: $(command -v cc)"
else
    missing+=("build-essential pkg-config")
    labels+=("build tools")
fi

# The observability and service tests: promtool (Debian's prometheus package, without the
# exporters it recommends) checks a live scrape and the alert rules; systemd-analyze checks the
# unit.
if command -v promtool >/dev/null 2>&1; then
    log "found promtool: $(command -v promtool)"
else
    missing+=("--no-install-recommends prometheus")
    labels+=("promtool")
fi

if command -v systemd-analyze >/dev/null 2>&1; then
    log "found systemd-analyze: $(command -v systemd-analyze)"
else
    missing+=("--no-install-recommends systemd")
    labels+=("systemd-analyze")
fi

if ((${#missing[@]} > 0)); then
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo -n)
        else
            die "need root to install: ${labels[*]} (run as root or install sudo)"
        fi
    else
        SUDO=()
    fi
    log "running apt-get update (needed for: ${labels[*]})"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    for i in "${!missing[@]}"; do
        # shellcheck disable=SC2086 # intentional word splitting of the package list
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q ${missing[$i]} </dev/null >/dev/null
        log "installed ${labels[$i]} (${missing[$i]})"
    done
    [[ -x /usr/bin/chromium ]] || die "chromium install did not produce /usr/bin/chromium"
    [[ -x /usr/lib/chromium/chromium-headless-shell ]] \
        || die "chromium-headless-shell install did not produce /usr/lib/chromium/chromium-headless-shell"
    # Debian's prometheus package enables its own server; only promtool is wanted here.
    if [[ " ${labels[*]} " == *" promtool "* ]] && command -v systemctl >/dev/null 2>&1 \
        && systemctl is-enabled prometheus >/dev/null 2>&1; then
        "${SUDO[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
        log "disabled the prometheus service the package enabled (only promtool is used)"
    fi
fi

# schemathesis, pinned, in its own venv (tests/integration/openapi.rs runs it from there).
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV=/opt/shotfarm-schemathesis
if ! $FOR_TESTS; then
    :
elif [[ -x $SCHEMATHESIS_VENV/bin/schemathesis ]] \
    && [[ $("$SCHEMATHESIS_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null) == "$SCHEMATHESIS_VERSION" ]]; then
    log "found schemathesis $SCHEMATHESIS_VERSION: $SCHEMATHESIS_VENV/bin/schemathesis"
else
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root to install schemathesis into $SCHEMATHESIS_VENV"
        SUDO=(sudo -n)
    else
        SUDO=()
    fi
    log "installing schemathesis $SCHEMATHESIS_VERSION into $SCHEMATHESIS_VENV (from PyPI)"
    "${SUDO[@]}" /usr/bin/python3 -m venv "$SCHEMATHESIS_VENV"
    "${SUDO[@]}" "$SCHEMATHESIS_VENV/bin/pip" install -q --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" </dev/null >/dev/null
    [[ -x $SCHEMATHESIS_VENV/bin/schemathesis ]] \
        || die "the schemathesis install did not produce $SCHEMATHESIS_VENV/bin/schemathesis"
    log "installed schemathesis $SCHEMATHESIS_VERSION"
fi

# moto in server mode, pinned, in its own venv: the S3-compatible server the object storage tests
# (tests/integration/storage.rs, through tests/kit's moto fixture) start on a loopback port.
MOTO_VERSION=5.2.5
MOTO_VENV=/opt/shotfarm-moto
if ! $FOR_TESTS; then
    :
elif [[ -x $MOTO_VENV/bin/moto_server ]] \
    && [[ $("$MOTO_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null) == "$MOTO_VERSION" ]]; then
    log "found moto $MOTO_VERSION: $MOTO_VENV/bin/moto_server"
else
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root to install moto into $MOTO_VENV"
        SUDO=(sudo -n)
    else
        SUDO=()
    fi
    log "installing moto[server] $MOTO_VERSION into $MOTO_VENV (from PyPI)"
    "${SUDO[@]}" /usr/bin/python3 -m venv "$MOTO_VENV"
    "${SUDO[@]}" "$MOTO_VENV/bin/pip" install -q --disable-pip-version-check \
        "moto[server]==$MOTO_VERSION" </dev/null >/dev/null
    [[ -x $MOTO_VENV/bin/moto_server ]] \
        || die "the moto install did not produce $MOTO_VENV/bin/moto_server"
    log "installed moto $MOTO_VERSION"
fi

if command -v cargo >/dev/null 2>&1; then
    log "found cargo: $(command -v cargo) ($(cargo --version 2>/dev/null))"
else
    die "cargo not found (looked in \$HOME/.cargo/bin and PATH). Install Rust via rustup: https://rustup.rs"
fi
