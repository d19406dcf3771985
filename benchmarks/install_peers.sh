#!/usr/bin/env bash
# Install the peer synthesizers used by the CPU benchmark (benchmarks/peers.py).
#
#   pyo, SignalFlow       from PyPI  (pip, into the current Python)
#   scsynth (NRT mode)    Debian package supercollider-server
#   Csound                Debian package csound
#
# Idempotent: a peer that is already importable / on PATH is left alone.
# A peer that fails to install is reported and skipped; the script always
# exits 0, so a benchmark run simply measures whichever peers are present.
#
# Environment:
#   PYTHON   Python interpreter to install the PyPI peers into (default python3)
#   PEERS    space-separated subset to install (default: all four)

set -u

PYTHON="${PYTHON:-python3}"
PEERS="${PEERS:-pyo signalflow scsynth csound}"
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi

ok=()
failed=()
apt_updated=0

log() { printf '[install_peers] %s\n' "$*" >&2; }

have_py() {  # have_py MODULE -> 0 if importable
    "$PYTHON" -c "import $1" >/dev/null 2>&1
}

pip_peer() {  # pip_peer NAME MODULE
    local name=$1 module=$2
    if have_py "$module"; then
        log "$name: already installed"
        return 0
    fi
    log "$name: pip install $name"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "$name" \
        && have_py "$module"
}

apt_peer() {  # apt_peer BINARY PACKAGE...
    local binary=$1
    shift
    if command -v "$binary" >/dev/null 2>&1; then
        log "$binary: already installed"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "$binary: apt-get not available"
        return 1
    fi
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        $SUDO apt-get update -qq >/dev/null || log "apt-get update failed"
        apt_updated=1
    fi
    log "$binary: apt-get install $*"
    # jackd2 asks (debconf) whether to enable realtime priority; answer no.
    echo "jackd2 jackd/tweak_rt_limits boolean false" \
        | $SUDO debconf-set-selections >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        --no-install-recommends "$@" >/dev/null \
        && command -v "$binary" >/dev/null 2>&1
}

for peer in $PEERS; do
    case "$peer" in
        pyo)        pip_peer pyo pyo ;;
        signalflow) pip_peer signalflow signalflow ;;
        scsynth)    apt_peer scsynth supercollider-server ;;
        csound)     apt_peer csound csound ;;
        *)          log "unknown peer '$peer'"; false ;;
    esac
    if [ $? -eq 0 ]; then ok+=("$peer"); else failed+=("$peer"); log "$peer: FAILED, skipped"; fi
done

log "installed: ${ok[*]:-none}"
if [ "${#failed[@]}" -gt 0 ]; then
    log "failed:    ${failed[*]}"
fi
exit 0
