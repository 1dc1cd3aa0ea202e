#!/usr/bin/env bash
# The window really comes to the front: the `activation` feature's `activation::raise`, as
# the examples `gui` (winit) and `egui` (eframe) call it for every request, under a real
# compositor and a real window manager:
#   - Wayland (sway, headless): another window takes the focus, then a second launch runs
#     with a token the compositor gave (tests/bin/activation_token.rs, as a launcher gets
#     one); the primary's window must be focused afterwards (`swaymsg -t get_tree`). The
#     same token once more, with the focus moved away again, must do nothing: tokens are
#     single-use.
#   - Wayland, no token: the same with neither XDG_ACTIVATION_TOKEN nor DESKTOP_STARTUP_ID
#     set: the launch asks the compositor for a token itself and forwards it.
#   - X11 (Xvfb with openbox, which honours _NET_ACTIVE_WINDOW): `_NET_ACTIVE_WINDOW` on
#     the root window, read back with xprop, must name the primary's window; openbox's
#     debug log must show the request came from an application (source indication 1)
#     with the timestamp of the launch's DESKTOP_STARTUP_ID (it complains of one without).
# Each case runs twice: once with the primary's raising off (SOLO_EXAMPLE_NO_RAISE=1), where
# the focus must stay on the other window, and once on, where it must move. One more runs
# with sway's default policy, `focus_on_window_activation urgent`: the window is marked
# urgent, the focus stays, and `raise` still returns Ok (the protocol has no answer).
#
# sway 1.7 refuses to run as root: as root this starts it as nobody (setpriv), in a runtime
# directory of its own; the clients, root, reach it through absolute paths in
# WAYLAND_DISPLAY and SWAYSOCK. Its config: `focus_on_window_activation focus` (the default,
# `urgent`, only marks the window) and `xwayland disable`.
#
#   tests/activation.sh            # every case
#   tests/activation.sh notoken    # only the cases whose name has "notoken"
#
# Installs what it needs (sway, jq, xvfb, openbox, wmctrl, x11-utils, Mesa) when missing.
# Prints one closing line "N passed, N failed" and exits non-zero if any check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
filter=${1:-}

need=()
command -v sway >/dev/null || need+=(sway)
command -v jq >/dev/null || need+=(jq)
command -v Xvfb >/dev/null || need+=(xvfb)
command -v openbox >/dev/null || need+=(openbox)
command -v wmctrl >/dev/null || need+=(wmctrl)
command -v xprop >/dev/null || need+=(x11-utils)
command -v setpriv >/dev/null || need+=(util-linux)
[ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] || [ -e /usr/lib/x86_64-linux-gnu/dri/llvmpipe_dri.so ] \
  || need+=(libgl1-mesa-dri libegl1)
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --quiet --example gui --features gui-example
cargo build --quiet --example egui --features egui-example
cargo build --quiet --example activation_token --features activation
bin=$root/target/debug/examples

work=$(mktemp -d /tmp/solo-activation.XXXXXX)
chmod 755 "$work" # sway, as nobody, reads its config here
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAILED: $*"; failed=$((failed + 1)); }

# wait_for SECONDS COMMAND...: runs COMMAND until it succeeds; fails after SECONDS.
wait_for() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < end)) || return 1
    sleep 0.1
  done
}

# The clients' environment: none of the launch's activation variables leak in.
unset XDG_ACTIVATION_TOKEN DESKTOP_STARTUP_ID WAYLAND_DISPLAY DISPLAY SWAYSOCK
export LIBGL_ALWAYS_SOFTWARE=1

# ---------------------------------------------------------------------------- Wayland
sway_run=$work/sway-run
mkdir -m 700 "$sway_run"
printf 'xwayland disable\nfocus_on_window_activation focus\n' >"$work/sway.config"
chmod 644 "$work/sway.config"
as_sway=()
if [ "$(id -u)" = 0 ]; then
  chown 65534:65534 "$sway_run"
  as_sway=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
env -i PATH="$PATH" HOME="$work" XDG_RUNTIME_DIR="$sway_run" \
  WLR_BACKENDS=headless WLR_LIBINPUT_NO_DEVICES=1 WLR_RENDERER=pixman \
  "${as_sway[@]}" sway -c "$work/sway.config" >"$work/sway.log" 2>&1 &
pids+=($!)
wayland_socket() { find "$sway_run" -maxdepth 1 -type s -name 'wayland-*' | head -1; }
sway_up() { compgen -G "$sway_run/sway-ipc.*.sock" >/dev/null && [ -n "$(wayland_socket)" ]; }
if ! wait_for 30 sway_up; then
  fail "sway did not start within 30 s: $(tail -5 "$work/sway.log")"
  echo "activation: $passed passed, $failed failed"
  exit 1
fi
SWAYSOCK=$(compgen -G "$sway_run/sway-ipc.*.sock" | head -1)
export SWAYSOCK
wayland=$(wayland_socket) # absolute: clients find it without sway's XDG_RUNTIME_DIR

# start_primary NAME DIR EXAMPLE on|off HAS_WINDOW [VAR=value...]: the example's primary
# on a.txt, in DIR's own runtime directory, with the variables given (raising off:
# SOLO_EXAMPLE_NO_RAISE=1); sets $primary and adds it to pids. Fails the case, returning
# 1, if HAS_WINDOW does not see its window within 30 s.
start_primary() {
  local name=$1 dir=$2 example=$3 raise=$4 has=$5
  shift 5
  mkdir -p -m 700 "$dir/run" "$dir/other" "$dir/cwd"
  local no_raise=()
  [ "$raise" = off ] && no_raise=(SOLO_EXAMPLE_NO_RAISE=1)
  (cd "$dir/cwd" && exec env "$@" XDG_RUNTIME_DIR="$dir/run" "${no_raise[@]}" \
    "$bin/$example" a.txt >"$dir/primary.out" 2>"$dir/primary.err") &
  primary=$!
  pids+=("$primary")
  if ! wait_for 30 "$has" "$primary"; then
    fail "$name: the primary's window did not appear within 30 s: $(cat "$dir/primary.err")"
    return 1
  fi
}

tree() { swaymsg -t get_tree -r; }
focused_pid() { tree | jq -r '[.. | objects | select(.focused? == true) | .pid // empty] | first // empty'; }
has_window() { [ -n "$(tree | jq --argjson p "$1" '.. | objects | select(.pid? == $p) | .id')" ]; }
focused_is() { [ "$(focused_pid)" = "$1" ]; }
title_has() { tree | jq -r --argjson p "$1" '.. | objects | select(.pid? == $p) | .name' | grep -qF "$2"; }
focus_pid() { swaymsg "[pid=$1] focus" >/dev/null && wait_for 10 focused_is "$1"; }

# wayland_case EXAMPLE token|notoken on|off|urgent (urgent: raising on, and sway's
# default `focus_on_window_activation urgent` for the case)
wayland_case() {
  local example=$1 how=$2 raise=$3
  local name="wayland $example, $how, raising $raise" dir="$work/wl-$example-$how-$raise"
  [[ "$name" == *"$filter"* ]] || return 0
  local primary
  start_primary "$name" "$dir" "$example" "$raise" has_window WAYLAND_DISPLAY="$wayland" || return
  # Another window takes the focus: the gui example as another app (its own runtime dir).
  (cd "$dir/other" && exec env WAYLAND_DISPLAY="$wayland" XDG_RUNTIME_DIR="$dir/other" \
    "$bin/gui" other.txt >"$dir/other.out" 2>"$dir/other.err") &
  local other=$!
  pids+=("$other")
  if ! wait_for 30 has_window "$other" || ! focus_pid "$other"; then
    fail "$name: the other window did not take the focus"
    kill "$primary" "$other" 2>/dev/null || true
    return
  fi

  local token_env=() token=
  if [ "$how" = token ]; then
    if ! token=$(WAYLAND_DISPLAY="$wayland" "$bin/activation_token" org.solo-instance.Launcher); then
      fail "$name: the compositor gave no token"
      kill "$primary" "$other" 2>/dev/null || true
      return
    fi
    token_env=(XDG_ACTIVATION_TOKEN="$token")
  fi
  [ "$raise" = urgent ] && swaymsg focus_on_window_activation urgent >/dev/null
  local out rc=0
  out=$(cd "$dir/cwd" && env WAYLAND_DISPLAY="$wayland" XDG_RUNTIME_DIR="$dir/run" "${token_env[@]}" \
    timeout 20 "$bin/$example" b.txt 2>&1) || rc=$?
  [ "$raise" = urgent ] && swaymsg focus_on_window_activation focus >/dev/null
  if [ "$rc" != 0 ]; then
    fail "$name: the second launch exited $rc: $out"
  elif ! grep -qx "OPEN $dir/cwd/b.txt" "$dir/primary.out"; then
    fail "$name: the primary did not open b.txt: $(cat "$dir/primary.out")"
  else
    # The primary replies only after `raise` returned, and `raise` returns once the
    # compositor answered a round trip after the activation: the focus is settled now.
    local now
    now=$(focused_pid)
    if [ "$raise" = urgent ]; then
      # sway's default policy: the request is taken, the window only marked; the protocol
      # has no answer, so `raise` returned Ok and the app cannot tell.
      local urgent
      urgent=$(tree | jq --argjson p "$primary" '.. | objects | select(.pid? == $p) | .urgent')
      if [ "$now" = "$other" ] && [ "$urgent" = true ] && ! grep -q 'not raised' "$dir/primary.err"; then
        ok "$name: sway's default policy marked the window urgent and left the focus; raise said Ok"
      else fail "$name: focus on pid ${now:-none} (other $other), urgent $urgent: $(cat "$dir/primary.err")"; fi
    elif [ "$raise" = on ]; then
      if [ "$now" = "$primary" ]; then ok "$name: the primary's window took the focus"
      else fail "$name: the focus is on pid ${now:-none}, not the primary's $primary: $(cat "$dir/primary.err")"; fi
    else
      if [ "$now" = "$other" ]; then ok "$name: the focus stayed on the other window"
      else fail "$name: the focus moved to pid ${now:-none} with raising off"; fi
    fi
  fi

  # Tokens are single-use: the same token again, with the focus moved away, does nothing.
  if [ "$how" = token ] && [ "$raise" = on ] && focus_pid "$other"; then
    rc=0
    out=$(cd "$dir/cwd" && env WAYLAND_DISPLAY="$wayland" XDG_RUNTIME_DIR="$dir/run" \
      XDG_ACTIVATION_TOKEN="$token" timeout 20 "$bin/$example" c.txt 2>&1) || rc=$?
    local now
    now=$(focused_pid)
    if [ "$rc" = 0 ] && grep -qx "OPEN $dir/cwd/c.txt" "$dir/primary.out" && [ "$now" = "$other" ]; then
      ok "$name: the used token, forwarded again, left the focus on the other window"
    else
      fail "$name: the used token again: launch exit $rc ($out), focus on pid ${now:-none} (other $other)"
    fi
  fi
  kill "$primary" "$other" 2>/dev/null || true
  wait "$primary" "$other" 2>/dev/null || true
}

for example in gui egui; do
  for how in token notoken; do
    for raise in off on; do
      wayland_case "$example" "$how" "$raise"
    done
  done
done
wayland_case gui token urgent

# ---------------------------------------------------------------------------- X11
disp=90
while [ -e "/tmp/.X11-unix/X$disp" ] || [ -e "/tmp/.X$disp-lock" ]; do disp=$((disp + 1)); done
Xvfb ":$disp" -screen 0 1024x768x24 -nolisten tcp >/dev/null 2>&1 &
pids+=($!)
x_up() { [ -e "/tmp/.X11-unix/X$disp" ]; }
wait_for 30 x_up || fail "Xvfb did not start"
export DISPLAY=":$disp"
# --debug: openbox logs each _NET_ACTIVE_WINDOW it gets, with its source indication, and
# complains of one without a timestamp.
HOME=$work openbox --debug >"$work/openbox.log" 2>&1 &
pids+=($!)
wm_up() { xprop -root _NET_SUPPORTING_WM_CHECK 2>/dev/null | grep -q 'window id'; }
wait_for 30 wm_up || fail "openbox did not start: $(cat "$work/openbox.log")"

# The window of a pid (openbox lists it in _NET_CLIENT_LIST; winit sets _NET_WM_PID), as a number.
x_window() { wmctrl -lp | awk -v p="$1" '$3 == p { print $1; exit }'; }
x_active() { printf '%d' "$(xprop -root _NET_ACTIVE_WINDOW | awk '{ print $NF }')" 2>/dev/null; }
x_has_window() { [ -n "$(x_window "$1")" ]; }
x_active_is() { [ "$(x_active)" = "$(printf '%d' "$1")" ]; }

# Waits until openbox has handled every message sent to it before, and the focus changes
# they made: twice, a `_NET_NUMBER_OF_DESKTOPS` request and its root property read back.
# openbox handles its events in order; the focus it gives is set on the FocusIn that
# follows, which comes before the second request's.
wm_settle() {
  local n
  for n in 2 1; do
    wmctrl -n "$n"
    wait_for 10 desktops_are "$n" || return 1
  done
}
desktops_are() { xprop -root _NET_NUMBER_OF_DESKTOPS | grep -q "= $1\$"; }

# x11_case EXAMPLE on|off
x11_case() {
  local example=$1 raise=$2
  local name="X11 $example, raising $raise" dir="$work/x11-$example-$raise"
  [[ "$name" == *"$filter"* ]] || return 0
  local primary
  start_primary "$name" "$dir" "$example" "$raise" x_has_window || return
  (cd "$dir/other" && exec env XDG_RUNTIME_DIR="$dir/other" "$bin/gui" other.txt >"$dir/other.out" 2>"$dir/other.err") &
  local other=$!
  pids+=("$other")
  local pwin owin
  pwin=$(x_window "$primary")
  if ! wait_for 30 x_has_window "$other"; then
    fail "$name: the other window did not appear"
    kill "$primary" "$other" 2>/dev/null || true
    return
  fi
  owin=$(x_window "$other")
  wmctrl -ia "$owin"
  if ! wait_for 10 x_active_is "$owin"; then
    fail "$name: the other window did not take the focus"
    kill "$primary" "$other" 2>/dev/null || true
    return
  fi
  # A startup id as a launcher sets it, with the X server time of the user's action
  # (openbox does not judge the time; the check is that it arrives).
  local out rc=0 logged
  logged=$(wc -l <"$work/openbox.log")
  out=$(cd "$dir/cwd" && env XDG_RUNTIME_DIR="$dir/run" DESKTOP_STARTUP_ID="solo-activation-$$_TIME4242" \
    timeout 20 "$bin/$example" b.txt 2>&1) || rc=$?
  if [ "$rc" != 0 ]; then
    fail "$name: the second launch exited $rc: $out"
  elif [ "$raise" = on ]; then
    # The window manager acts on the message on its own time: wait for it.
    if wait_for 10 x_active_is "$pwin"; then ok "$name: _NET_ACTIVE_WINDOW is the primary's window ($pwin)"
    else fail "$name: _NET_ACTIVE_WINDOW is $(x_active), not the primary's $pwin: $(cat "$dir/primary.err")"; fi
    wm_settle || true
    local news
    news=$(tail -n +"$((logged + 1))" "$work/openbox.log")
    if grep -q "net_active_window for $(printf '0x%x' "$pwin") source=application" <<<"$news" \
      && ! grep -q 'missing a timestamp' <<<"$news"; then
      ok "$name: openbox got _NET_ACTIVE_WINDOW from an application (source 1), with a timestamp"
    else fail "$name: openbox's log of the request: $(grep -i 'active_window' <<<"$news")"; fi
  else
    # Raising off. A `_NET_ACTIVE_WINDOW` the primary sent would reach openbox before the
    # launch got its reply; `wm_settle` waits until openbox has handled it.
    if ! wm_settle; then fail "$name: openbox did not answer"
    elif x_active_is "$owin"; then ok "$name: _NET_ACTIVE_WINDOW stayed on the other window"
    else fail "$name: _NET_ACTIVE_WINDOW moved to $(x_active) with raising off"; fi
  fi
  kill "$primary" "$other" 2>/dev/null || true
  wait "$primary" "$other" 2>/dev/null || true
}

for example in gui egui; do
  for raise in off on; do
    x11_case "$example" "$raise"
  done
done

echo "activation: $passed passed, $failed failed"
[ "$failed" = 0 ]
