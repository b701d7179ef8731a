#!/usr/bin/env bash
# Host network for Ferry's and QEMU's networked VMs (issue 12): one Linux bridge, ferry0,
# with the host's address 10.77.0.1/24 on it; each VM gets a TAP device enslaved to it, and
# the guest takes 10.77.0.2 (or another address of the /24) from its kernel command line
# (ip=10.77.0.2::10.77.0.1:255.255.255.0::eth0:off).  A migrated VM's destination has its
# own TAP on the same bridge: the bridge learns the VM's MAC on the new port from the
# destination's first frame (the guest's announcement or gratuitous ARP).
#
# Usage (root):
#   scripts/ferry-net.sh up          create ferry0 with 10.77.0.1/24 and bring it up (idempotent)
#   scripts/ferry-net.sh down        remove ferry0 and every TAP enslaved to it (idempotent)
#   scripts/ferry-net.sh tap NAME    create TAP NAME (persistent, not owned by a user),
#                                    enslave it to ferry0 and bring it up (idempotent; runs `up`)
#   scripts/ferry-net.sh untap NAME  remove TAP NAME
#   scripts/ferry-net.sh check       exit 0 iff ferry0 is up with its address and /dev/net/tun exists
# Environment: FERRY_BRIDGE (ferry0), FERRY_BRIDGE_ADDR (10.77.0.1/24).
set -euo pipefail

br="${FERRY_BRIDGE:-ferry0}"
addr="${FERRY_BRIDGE_ADDR:-10.77.0.1/24}"

die() { echo "ferry-net: $*" >&2; exit 1; }
need_root() { [ "$(id -u)" -eq 0 ] || die "$1 needs root (CAP_NET_ADMIN)"; }
exists() { ip link show dev "$1" >/dev/null 2>&1; }

up() {
  need_root up
  command -v ip >/dev/null || die "ip (iproute2) is not installed"
  exists "$br" || ip link add name "$br" type bridge
  # No STP and no forwarding delay: a port forwards as soon as it is up, so a migrated VM's
  # new TAP carries traffic at once.
  ip link set dev "$br" type bridge stp_state 0 forward_delay 0 2>/dev/null || true
  # `ip addr replace` is idempotent (a check piped into `grep -q` is not under pipefail: grep's
  # early exit can SIGPIPE ip, and the add then fails with "Address already assigned").
  ip addr replace "$addr" dev "$br"
  ip link set dev "$br" up
}

down() {
  need_root down
  exists "$br" || return 0
  local t
  for t in $(ip -o link show master "$br" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del dev "$t" 2>/dev/null || true
  done
  ip link del dev "$br"
}

tap() {
  local name="$1"
  [ -n "$name" ] || die "tap needs a name"
  [ -c /dev/net/tun ] || die "/dev/net/tun is missing (no TUN/TAP support here)"
  up
  exists "$name" || ip tuntap add dev "$name" mode tap
  ip link set dev "$name" master "$br"
  ip link set dev "$name" up
}

untap() {
  local name="$1"
  [ -n "$name" ] || die "untap needs a name"
  need_root untap
  ! exists "$name" || ip link del dev "$name"
}

check() {
  [ -c /dev/net/tun ] || { echo "ferry-net: /dev/net/tun is missing" >&2; return 1; }
  exists "$br" || { echo "ferry-net: $br does not exist (run scripts/ferry-net.sh up as root)" >&2; return 1; }
  local addrs
  addrs="$(ip addr show dev "$br")"
  [[ "$addrs" == *"inet ${addr} "* ]] || { echo "ferry-net: $br lacks $addr" >&2; return 1; }
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  tap) tap "${2:-}" ;;
  untap) untap "${2:-}" ;;
  check) check ;;
  *) sed -n '2,18p' "$0" >&2; exit 2 ;;
esac
