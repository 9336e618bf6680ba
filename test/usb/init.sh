#!/bin/busybox sh
# Guest /init for the usbhid end-to-end test (see run.sh). Results go to the
# serial console; every step has a timeout so the guest always powers off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc none /proc
mount -t sysfs none /sys
mount -t devtmpfs none /dev
mkdir -p /tmp
for m in configfs usb-common usbcore udc-core libcomposite dummy_hcd usb_f_fs hid usbhid hid-generic; do
  insmod /lib/modules/$m.ko || echo "E2E-FAIL insmod $m"
done
mount -t configfs none /sys/kernel/config
G=/sys/kernel/config/usb_gadget/ups
mkdir $G
echo 0x051d > $G/idVendor; echo 0x0002 > $G/idProduct; echo 0x0106 > $G/bcdDevice
mkdir $G/strings/0x409
echo "American Power Conversion" > $G/strings/0x409/manufacturer
echo "Back-UPS BK650M2-CH FW:294803G -292804G" > $G/strings/0x409/product
echo "EMULATED0001" > $G/strings/0x409/serialnumber
mkdir $G/functions/ffs.ups $G/configs/c.1
ln -s $G/functions/ffs.ups $G/configs/c.1/
mkdir -p /dev/ffs-ups
mount -t functionfs ups /dev/ffs-ups
/bin/ups-emulator -ffs /dev/ffs-ups -desc /data/desc.hex -features /data/features.hex > /tmp/emu.log 2>&1 &
EMU=$!
i=0; while [ ! -e /dev/ffs-ups/ep1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
echo dummy_udc.0 > $G/UDC
echo "E2E-PLUGGED"

# waitfor PATTERN SECONDS: wait until the watch log has a line matching.
waitfor() {
  n=0
  while ! grep -q "$1" /tmp/watch.log 2>/dev/null; do
    sleep 0.2; n=$((n+1))
    if [ $n -ge $(($2*5)) ]; then echo "E2E-TIMEOUT $1"; return 1; fi
  done
  return 0
}

/bin/upsbridge hid watch --vendor-id 051d --poll-interval 60s --instcmd beeper.mute --id ups > /tmp/watch.log 2>&1 &
W=$!
waitfor "^INSTCMD" 60
sleep 1
kill -USR1 $EMU
waitfor "EVENT .* ONBATT" 20
sleep 1
echo "" > $G/UDC
echo "E2E-UNPLUGGED"
waitfor "EVENT .* COMMBAD" 30
echo dummy_udc.0 > $G/UDC
echo "E2E-REPLUGGED"
waitfor "EVENT .* COMMOK" 60
kill $W
sleep 0.5

# The same UPS served over the NUT protocol by upsbridge run, read by upsc.
ifconfig lo 127.0.0.1 up
/bin/upsbridge run -c /data/upsbridge.yaml > /tmp/run.log 2>&1 &
RUN=$!
n=0
while ! /bin/upsc ups@127.0.0.1:3493 > /tmp/upsc.out 2>&1 || ! grep -q "^ups.model:" /tmp/upsc.out; do
  sleep 0.5; n=$((n+1))
  if [ $n -ge 120 ]; then echo "E2E-TIMEOUT upsc via the NUT server"; break; fi
done
echo "E2E-BEGIN-UPSC"; cat /tmp/upsc.out; echo "E2E-END-UPSC"
kill $RUN; kill $EMU
sleep 0.5
echo "E2E-BEGIN-WATCH"; cat /tmp/watch.log; echo "E2E-END-WATCH"
echo "E2E-BEGIN-EMU"; cat /tmp/emu.log; echo "E2E-END-EMU"
echo "E2E-BEGIN-RUN"; cat /tmp/run.log; echo "E2E-END-RUN"
echo "E2E-DONE"
poweroff -f
