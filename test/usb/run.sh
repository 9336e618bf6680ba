#!/usr/bin/env bash
# End-to-end test of the usbhid source on a real USB stack without hardware:
# Debian's stock kernel in qemu (TCG), dummy_hcd + a FunctionFS gadget driven
# by test/usb/emulator, and the real upsbridge binary (cgo, gousb) inside the
# guest. Checks: published variables, an interrupt "AC lost" report becoming
# ONBATT at once, an instant command reaching the emulator, unplug/replug
# giving COMMBAD then COMMOK, and NUT's upsc reading the UPS through
# upsbridge's NUT server in the guest. Prints the measured latency. Idempotent;
# installs what it needs when run as root. Exit 0 pass, 1 fail.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=$ROOT/testdata/hid
if [ "$(id -u)" = 0 ]; then CACHE=${UPSBRIDGE_E2E_CACHE:-/var/cache/upsbridge-e2e}; else CACHE=${UPSBRIDGE_E2E_CACHE:-$HOME/.cache/upsbridge-e2e}; fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "usb-e2e: FAIL: $*" >&2; exit 1; }
log() { echo "usb-e2e: $*" >&2; }

# 1. Packages.
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -q '^insmod$' && file -L /bin/busybox 2>/dev/null | grep -q static || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v upsc >/dev/null || need+=(nut-client)
pkg-config --exists libusb-1.0 2>/dev/null || need+=(libusb-1.0-0-dev)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || fail "missing packages ${need[*]} (run as root to install them)"
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null ||
    { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; } ||
    fail "apt-get install ${need[*]}"
fi
BUSYBOX=/bin/busybox

# 2. Kernel: the current Debian linux-image, downloaded and unpacked (not installed).
mkdir -p "$CACHE"
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$KPKG" ] || { [ "$(id -u)" = 0 ] && apt-get update >/dev/null; KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'); }
[ -n "$KPKG" ] || fail "cannot find the Debian kernel package name"
KVER=${KPKG#linux-image-}
KDIR=$CACHE/$KPKG
if [ ! -f "$KDIR/boot/vmlinuz-$KVER" ]; then
  log "downloading $KPKG"
  ( cd "$CACHE" && ls ${KPKG}_*.deb >/dev/null 2>&1 || apt-get download "$KPKG" >/dev/null 2>&1 ) || fail "apt-get download $KPKG"
  rm -rf "$KDIR.tmp" && mkdir -p "$KDIR.tmp"
  dpkg-deb -x "$(ls "$CACHE"/${KPKG}_*.deb | head -1)" "$KDIR.tmp" && mv "$KDIR.tmp" "$KDIR"
fi
MODDIR=$KDIR/lib/modules/$KVER/kernel

# 3. Binaries: the real upsbridge (cgo, gousb) and the pure-Go emulator.
log "building"
( cd "$ROOT" && CGO_ENABLED=1 go build -o "$WORK/upsbridge" ./cmd/upsbridge ) || fail "build upsbridge"
( cd "$ROOT" && CGO_ENABLED=0 go build -o "$WORK/ups-emulator" ./test/usb/emulator ) || fail "build emulator"

# 4. Initramfs.
R=$WORK/root
mkdir -p "$R"/{bin,lib/modules,data,proc,sys,dev,tmp,lib64}
cp "$BUSYBOX" "$R/bin/busybox" && ln -sf busybox "$R/bin/sh"
cp "$WORK/upsbridge" "$WORK/ups-emulator" "$R/bin/"
for lib in $(ldd "$WORK/upsbridge" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
  mkdir -p "$R$(dirname "$lib")" && cp -L "$lib" "$R$lib"
done
for m in configfs usb-common usbcore udc-core libcomposite dummy_hcd usb_f_fs hid usbhid hid-generic; do
  f=$(find "$MODDIR" -name "$m.ko*" | head -1)
  [ -n "$f" ] || fail "module $m not in $KPKG"
  case "$f" in
    *.xz) xz -dc "$f" > "$R/lib/modules/$m.ko" ;;
    *.zst) zstd -dc "$f" > "$R/lib/modules/$m.ko" ;;
    *) cp "$f" "$R/lib/modules/$m.ko" ;;
  esac
done
cp "$DATA/apc-back-ups-bk650m2-ch.hex" "$R/data/desc.hex"
cp "$DATA/apc-back-ups-bk650m2-ch.features.hex" "$R/data/features.hex"
cp "$ROOT/test/usb/init.sh" "$R/init" && chmod +x "$R/init"
# NUT's own upsc (nut-client) reads the emulated UPS through upsbridge's NUT
# server in the guest: nothing of NUT's server side is there.
UPSC=$(command -v upsc) || fail "upsc not found (nut-client)"
cp "$UPSC" "$R/bin/upsc"
for lib in $(ldd "$UPSC" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
  mkdir -p "$R$(dirname "$lib")" && cp -L "$lib" "$R$lib"
done
cat > "$R/data/upsbridge.yaml" <<'YAML'
log: {format: text}
mqtt: {url: embedded, listen: "127.0.0.1:1883"}
bridge: {id: guest, state_dir: /tmp/upsbridge}
hass: {enabled: false}
sources:
  - {id: rack, type: usbhid, vendor_id: "051d", poll_interval: 2s}
nut_server:
  listen: ["127.0.0.1:3493"]
  ups: [{id: rack, name: ups, description: "Emulated UPS on USB"}]
YAML
( cd "$R" && find . | cpio -o -H newc 2>/dev/null | gzip -1 ) > "$WORK/initrd.gz"

# 5. Boot (software emulation; KVM is not assumed).
log "booting $KPKG in qemu (TCG)"
start=$(date +%s)
timeout 480 qemu-system-x86_64 -machine q35,accel=tcg -cpu max -m 512 -smp 1 -nographic -no-reboot \
  -kernel "$KDIR/boot/vmlinuz-$KVER" -initrd "$WORK/initrd.gz" \
  -append "console=ttyS0 quiet rdinit=/init panic=-1" > "$WORK/console.log" 2>&1 || true
log "guest ran $(( $(date +%s) - start )) s"
tr -d '\r' < "$WORK/console.log" > "$WORK/c.log"
if [ -n "${UPSBRIDGE_E2E_LOG:-}" ]; then cp "$WORK/c.log" "$UPSBRIDGE_E2E_LOG"; fi

# 6. Verdict.
ok=1
check() { if grep -qE "$2" "$WORK/c.log"; then log "ok   $1"; else log "FAIL $1"; ok=0; fi; }
grep -q E2E-DONE "$WORK/c.log" || { tail -50 "$WORK/c.log" >&2; fail "the guest did not finish"; }
grep -E "E2E-(FAIL|TIMEOUT)" "$WORK/c.log" >&2 && ok=0
for v in "battery.charge: 100" "battery.runtime: 3618" "battery.voltage: 13.5" "input.voltage: 232.0" \
         "input.transfer.high: 278" "ups.beeper.status: disabled" "ups.status: OL DISCHRG" \
         "ups.model: Back-UPS BK650M2-CH" "ups.serial: EMULATED0001" "ups.mfr.date: 2020/05/08"; do
  check "variable $v" "^VAR $v\$"
done
check "instant command beeper.mute succeeded" "^INSTCMD [0-9]+ beeper.mute result=SUCCESS"
check "SET_REPORT reached the emulator" "^EMU [0-9]+ SET_REPORT 18 03"
check "ONBATT event" "^EVENT [0-9]+ ups ONBATT"
check "COMMBAD on unplug" "^EVENT [0-9]+ ups COMMBAD"
check "COMMOK on replug" "^EVENT [0-9]+ ups COMMOK"
# upsc through upsbridge's NUT server (no NUT driver or upsd in the guest).
sed -n '/E2E-BEGIN-UPSC/,/E2E-END-UPSC/p' "$WORK/c.log" > "$WORK/upsc.txt"
for v in "battery.charge: 100" "ups.model: Back-UPS BK650M2-CH" "ups.serial: EMULATED0001" "battery.runtime: 3618"; do
  if grep -qx "$v" "$WORK/upsc.txt"; then log "ok   upsc via the NUT server: $v"; else log "FAIL upsc via the NUT server: $v"; ok=0; fi
done
grep -qE '^ups.status: ' "$WORK/upsc.txt" && log "ok   upsc via the NUT server: $(grep -E '^ups.status: ' "$WORK/upsc.txt")" || { log "FAIL upsc via the NUT server: no ups.status"; ok=0; }
w=$(awk '/^EMU [0-9]+ INTR-WRITE/{print $2; exit}' "$WORK/c.log")
e=$(awk '/^EVENT [0-9]+ ups ONBATT/{print $2; exit}' "$WORK/c.log")
if [ -n "$w" ] && [ -n "$e" ]; then
  lat_us=$(( (e - w) / 1000 ))
  echo "usb-e2e: latency emulator interrupt write -> ONBATT event published: ${lat_us} us (poll interval 60 s)"
  # The poll interval is 60 s: anything under 5 s came from the interrupt.
  [ "$lat_us" -ge 0 ] && [ "$lat_us" -lt 5000000 ] || { log "FAIL latency ${lat_us} us: not from the interrupt"; ok=0; }
fi
b=$(grep -nE "^EVENT [0-9]+ ups COMMBAD" "$WORK/c.log" | head -1 | cut -d: -f1)
o=$(grep -nE "^EVENT [0-9]+ ups COMMOK" "$WORK/c.log" | head -1 | cut -d: -f1)
[ -n "$b" ] && [ -n "$o" ] && [ "$b" -lt "$o" ] || { log "FAIL COMMBAD must come before COMMOK"; ok=0; }
if [ $ok != 1 ]; then
  sed -n '/E2E-BEGIN-WATCH/,/E2E-END-RUN/p' "$WORK/c.log" | tail -120 >&2
  fail "see above"
fi
echo "usb-e2e: PASS"
