package hidmap

import (
	"math"

	"github.com/upsbridge/upsbridge/internal/hid/hidparse"
)

// findField returns the first field of a type whose path is p.
func findField(d *hidparse.Descriptor, path func(int) string, t hidparse.ReportType, p string) *hidparse.Field {
	for i := range d.Fields {
		if d.Fields[i].Type == t && path(i) == p {
			return &d.Fields[i]
		}
	}
	return nil
}

// setRange changes the logical range of every field with path p.
func setRange(d *hidparse.Descriptor, path func(int) string, p string, min, max int64) {
	for i := range d.Fields {
		if path(i) == p {
			d.Fields[i].LogMin, d.Fields[i].LogMax, d.Fields[i].LogMaxAssumed = min, max, false
		}
	}
}

// apcFixup: Back-UPS (051d:0002) declare input voltage with a logical
// maximum below the high transfer point; widen it to twice that point.
func apcFixup(pid uint16, d *hidparse.Descriptor, path func(int) string) {
	if pid != 0x0002 {
		return
	}
	hvt := findField(d, path, hidparse.Feature, "UPS.Input.HighVoltageTransfer")
	if hvt == nil {
		return
	}
	for _, p := range []string{"UPS.Input.Voltage", "UPS.Input.ConfigVoltage"} {
		if f := findField(d, path, hidparse.Feature, p); f != nil && hvt.LogMax > f.LogMax {
			setRange(d, path, p, 0, 2*hvt.LogMax)
		}
	}
}

// cpsFixup: CyberPower 0501/0601 copy the high transfer range into the
// output voltage; widen output and input voltage to 0..511. Their
// ConfigActivePower maximum is also too small.
func cpsFixup(pid uint16, d *hidparse.Descriptor, path func(int) string) {
	if pid != 0x0501 && pid != 0x0601 {
		return
	}
	out := findField(d, path, hidparse.Feature, "UPS.Output.Voltage")
	hvt := findField(d, path, hidparse.Feature, "UPS.Output.HighVoltageTransfer")
	if out != nil && hvt != nil && out.LogMin == hvt.LogMin && out.LogMax == hvt.LogMax {
		setRange(d, path, "UPS.Output.Voltage", 0, 511)
		setRange(d, path, "UPS.Input.Voltage", 0, 511)
	}
	if f := findField(d, path, hidparse.Feature, "UPS.Output.ConfigActivePower"); f != nil && f.LogMax < 2048 {
		setRange(d, path, "UPS.Output.ConfigActivePower", f.LogMin, 2048)
	}
}

// cpsPostVars: CyberPower battery voltage is sometimes 1.5x too high,
// frequencies 10x, and the charge can exceed 100.
func cpsPostVars(pid uint16, nums map[string]float64) {
	if v, ok := nums["battery.voltage"]; ok {
		if n, ok := nums["battery.voltage.nominal"]; ok && n > 0 && v/n > 1.4 {
			nums["battery.voltage"] = v * 2 / 3
		}
	}
	for _, k := range []string{"input.frequency", "output.frequency"} {
		if v, ok := nums[k]; ok && v > 100 {
			nums[k] = v / 10
		}
	}
	if v, ok := nums["battery.charge"]; ok && v > 100 {
		nums["battery.charge"] = 100
	}
}

// tripplitePostVars: some Tripp Lite firmware reports line voltages with a
// broken exponent; repair them like Belkin's.
func tripplitePostVars(pid uint16, nums map[string]float64) { exponentPostVars(pid, nums) }

// exponentPostVars repairs line voltages whose unit exponent is wrong
// (Belkin, Liebert, Tripp Lite): a mains voltage must lie in 80..300 V, so a
// value off by a power of ten is brought back when exactly one power fits.
func exponentPostVars(_ uint16, nums map[string]float64) {
	for _, k := range []string{"input.voltage", "input.voltage.nominal", "output.voltage", "output.voltage.nominal", "input.transfer.low", "input.transfer.high"} {
		v, ok := nums[k]
		if !ok || v <= 0 || (v >= 80 && v <= 300) {
			continue
		}
		for e := -9; e <= 9; e++ {
			if w := v * math.Pow10(e); w >= 80 && w <= 300 {
				nums[k] = w
				break
			}
		}
	}
}
