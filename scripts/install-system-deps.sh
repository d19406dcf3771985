#!/usr/bin/env bash
# Install the Debian packages jupysynth needs for its audio tests.
#
# - jackd2:        the JACK server; its "dummy" backend is our virtual sound
#                  card (real-time clocked, no hardware needed).
# - libportaudio2: Debian's PortAudio, built with the JACK host API.
#                  sounddevice's Linux wheel bundles no PortAudio, so it
#                  loads this one via ctypes.util.find_library('portaudio').
# - liblo-tools:   OSC command-line tools (oscsend/oscdump) for OSC tests.
# - chromium:      the browser the JupyterLab tests drive (Playwright).
# - nodejs, npm:   build the lab extension (labextension/) into the package;
#                  only when no `npm` is on the PATH already (NodeSource's
#                  nodejs bundles npm, Debian's comes apart).
#
# Idempotent: does nothing when every package is already installed, and runs
# `apt-get update` only when installing from the current lists fails.
set -euo pipefail

PACKAGES=(jackd2 libportaudio2 liblo-tools chromium)
if ! command -v npm >/dev/null 2>&1; then
    PACKAGES+=(nodejs npm)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    # dpkg-query prints "install ok installed" only for a fully installed
    # package; removed-but-configured ("deinstall ok config-files") counts
    # as missing.
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-system-deps: all packages present (${PACKAGES[*]})"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "install-system-deps: ERROR: missing packages: ${missing[*]}" >&2
    echo "install-system-deps: run this script as root (e.g. with sudo)," >&2
    echo "  or install them yourself: apt-get install ${missing[*]}" >&2
    exit 1
fi

echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# jackd2's postinst otherwise asks (debconf) whether to raise the realtime
# limits for the "audio" group; we run jackd with --no-realtime anyway.
echo "jackd2 jackd/tweak_rt_limits boolean false" | debconf-set-selections

# Try the install from the current package lists first; refresh them only if
# that fails (empty or stale lists on a fresh container), since
# `apt-get update` is the slow, network-bound part.
if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
    echo "install-system-deps: install failed with the current package lists;" \
        "running apt-get update and retrying"
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi
echo "install-system-deps: done"
