#!/usr/bin/env bash
# The Windows build's tests under Wine (see ../shared/wine/README.md): the unit tests
# (src/sys/windows.rs included), tests/windows.rs and the doc tests, built for
# x86_64-pc-windows-gnu and run with wine64. The Unix-only test files compile to nothing.
# Installs what it needs first (wine64, mingw-w64, the rustup target, a stand-in DLL).
# Exits non-zero if a test fails. Extra arguments go to `cargo test`, e.g.
#   tests/wine.sh --test windows -- --nocapture
#
# Wine is not Windows: a pass means the named-pipe code paths build, link and behave
# sensibly; tests/windows.rs lists where Wine 8 is known to differ.
set -euo pipefail
cd "$(dirname "$0")/.."
wine=${SOLO_WINE_DIR:-../shared/wine}
wine=$(cd "$wine" && pwd)

"$wine/setup.sh" >/dev/null
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$wine/run"
export WINEDEBUG=${WINEDEBUG:--all}
# The Wine prefix is $WINEPREFIX, else ~/.wine, created on first use (a few seconds,
# about 700 MB). Its wineserver exits by itself seconds after the last test.

# Each test has its own watchdog; this bounds a Wine that hangs outside any test.
exec timeout --kill-after=10 900 cargo test --target x86_64-pc-windows-gnu "$@"
