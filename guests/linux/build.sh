#!/usr/bin/env bash
# Builds Ferry's Linux guest from Debian packages, reproducibly:
#   guests/linux/bin/Image.gz            Linux 6.1 (linux-source-6.1), RV64, gzip -n -9
#   guests/linux/bin/initramfs.cpio.gz   /init (init/init.c against the kernel's nolibc)
#   guests/linux/bin/kernel.config       the resolved .config (reference)
#   guests/linux/bin/System.map.gz       kernel symbols (for debugging in the emulator)
#   guests/linux/bin/inputs.sha256       what the above were built from
#
# Usage: guests/linux/build.sh [--force]    build (installs missing Debian packages)
#        guests/linux/build.sh --check      exit 0 iff bin/inputs.sha256 matches the
#                                           current inputs, 1 otherwise (no build)
#        guests/linux/build.sh --if-changed build only if --check fails
#
# Work tree: ${FERRY_LINUX_BUILD:-/tmp/ferry-linux-build} (outside the repository).
# Heavy steps run under `nice -n 19`, make -j${FERRY_JOBS:-2}.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="$here/bin"
work="${FERRY_LINUX_BUILD:-/tmp/ferry-linux-build}"
jobs="${FERRY_JOBS:-2}"

mode=build
case "${1:-}" in
  "" | --force) mode=build ;;
  --check) mode=check ;;
  --if-changed) mode=if-changed ;;
  -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--force|--check|--if-changed]" >&2; exit 2 ;;
esac

# Debian packages whose versions are build inputs (compiler and kernel source), and the
# ones the build merely needs.
input_pkgs=(linux-source-6.1 gcc-riscv64-linux-gnu gcc-12-riscv64-linux-gnu binutils-riscv64-linux-gnu)
tool_pkgs=(make gcc libc6-dev bc flex bison xz-utils gzip)
# Files (relative to the repository) that are build inputs.
input_files=(guests/linux/build.sh guests/linux/ferry.config guests/linux/init/init.c)

# Fixed identity and time for reproducible output (2023-01-01 00:00:00 UTC).
export SOURCE_DATE_EPOCH=1672531200
export KBUILD_BUILD_TIMESTAMP="2023-01-01 00:00:00 UTC"
export KBUILD_BUILD_USER=ferry KBUILD_BUILD_HOST=ferry KBUILD_BUILD_VERSION=1
export ARCH=riscv CROSS_COMPILE=riscv64-linux-gnu-
export LC_ALL=C TZ=UTC

pkg_version() {  # installed version, else the version apt would install, else "none"
  local v
  v="$(dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true)"
  if [ -z "$v" ] || ! dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; then
    v="$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p')"
    [ -n "$v" ] && [ "$v" != "(none)" ] || v=none
  fi
  printf '%s' "$v"
}

# The inputs record: one line per input, then a hash over those lines.
inputs() {
  local p f body
  body="$(
    for p in "${input_pkgs[@]}"; do printf 'pkg %s %s\n' "$p" "$(pkg_version "$p")"; done
    for f in "${input_files[@]}"; do
      printf 'file %s %s\n' "$f" "$(sha256sum < "$repo/$f" | cut -d' ' -f1)"
    done
  )"
  printf '# Ferry Linux guest build inputs; `guests/linux/build.sh --check` compares this file.\n'
  printf '%s\n' "$body"
  printf 'inputs %s\n' "$(printf '%s\n' "$body" | sha256sum | cut -d' ' -f1)"
}

up_to_date() {
  [ -f "$bin/inputs.sha256" ] && [ -f "$bin/Image.gz" ] && [ -f "$bin/initramfs.cpio.gz" ] &&
    [ "$(inputs)" = "$(cat "$bin/inputs.sha256")" ]
}

if [ "$mode" = check ]; then
  if up_to_date; then echo "guests/linux: inputs unchanged"; exit 0; fi
  echo "guests/linux: inputs differ from bin/inputs.sha256:" >&2
  diff <(cat "$bin/inputs.sha256" 2>/dev/null) <(inputs) >&2 || true
  exit 1
fi
if [ "$mode" = if-changed ] && up_to_date; then
  echo "guests/linux: inputs unchanged, keeping the committed Image.gz and initramfs.cpio.gz"
  exit 0
fi

# ---- tools
missing=()
for p in "${input_pkgs[@]}" "${tool_pkgs[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "guests/linux: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---- kernel source: extract Debian's tarball once per package version
srcver="$(pkg_version linux-source-6.1)"
src="$work/linux-source-6.1"
if [ "$(cat "$work/source.version" 2>/dev/null)" != "$srcver" ] || [ ! -f "$src/Makefile" ]; then
  echo "guests/linux: extracting /usr/src/linux-source-6.1.tar.xz ($srcver) into $work"
  rm -rf "$src" "$work/source.version"
  mkdir -p "$work"
  nice -n 19 tar -xf /usr/src/linux-source-6.1.tar.xz -C "$work"
  printf '%s\n' "$srcver" > "$work/source.version"
fi

# ---- kernel: tinyconfig + ferry.config, always from a clean output directory
out="$work/out"
rm -rf "$out"
mkdir -p "$out"
kmake() { nice -n 19 make -s -C "$src" O="$out" "$@"; }
kmake tinyconfig
nice -n 19 "$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$here/ferry.config" >/dev/null
kmake olddefconfig
# Every option the fragment sets must survive (options that do not exist or are not
# visible in this configuration are reported as absent and ignored).
bad=0
while IFS= read -r l; do
  case "$l" in
    CONFIG_*=*) opt="${l%%=*}" ;;
    "# CONFIG_"*" is not set") opt="${l#\# }"; opt="${opt%% *}" ;;
    *) continue ;;
  esac
  got="$(grep -E "^$opt=|^# $opt is not set" "$out/.config" || true)"
  if [ -n "$got" ] && [ "$got" != "$l" ]; then
    echo "guests/linux: ferry.config asks for '$l' but the configuration has '$got'" >&2
    bad=1
  elif [ -z "$got" ] && [ "${l#CONFIG_}" != "$l" ]; then
    echo "guests/linux: ferry.config asks for '$l' but $opt is absent" >&2
    bad=1
  fi
done < "$here/ferry.config"
[ "$bad" -eq 0 ]

echo "guests/linux: building the kernel (make -j$jobs)"
kmake -j"$jobs" Image
kmake headers   # UAPI headers for nolibc, in $out/usr/include

# ---- /init against nolibc
nolibc="$src/tools/include/nolibc"
initbin="$work/init"
nice -n 19 riscv64-linux-gnu-gcc -Os -static -nostdlib -nostdinc \
  -isystem "$(riscv64-linux-gnu-gcc -print-file-name=include)" \
  -I"$nolibc" -I"$out/usr/include" -include nolibc.h \
  -march=rv64imac_zicsr_zifencei -mabi=lp64 \
  -ffreestanding -fno-stack-protector -fno-asynchronous-unwind-tables -fno-ident \
  -ffile-prefix-map="$repo"/= -Wall -Wextra -Werror \
  -Wl,--build-id=none -s -o "$initbin" "$here/init/init.c" -lgcc
touch -d "@$SOURCE_DATE_EPOCH" "$initbin"

# ---- initramfs: a fixed list through the kernel's gen_init_cpio (fixed mtimes, uid 0)
cat > "$work/initramfs.list" <<EOF
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /proc 0755 0 0
dir /sys 0755 0 0
file /init $initbin 0755 0 0
EOF

mkdir -p "$bin"
"$out/usr/gen_init_cpio" -t "$SOURCE_DATE_EPOCH" "$work/initramfs.list" | gzip -n -9 > "$bin/initramfs.cpio.gz.tmp"
gzip -n -9 < "$out/arch/riscv/boot/Image" > "$bin/Image.gz.tmp"
gzip -n -9 < "$out/System.map" > "$bin/System.map.gz.tmp"
cp "$out/.config" "$bin/kernel.config.tmp"
for f in Image.gz initramfs.cpio.gz System.map.gz kernel.config; do mv "$bin/$f.tmp" "$bin/$f"; done
inputs > "$bin/inputs.sha256"

echo "guests/linux: wrote"
(cd "$bin" && ls -l Image.gz initramfs.cpio.gz System.map.gz kernel.config inputs.sha256 && sha256sum Image.gz initramfs.cpio.gz)
