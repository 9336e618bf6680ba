package usb

import (
	"fmt"
	"testing"
)

// TestFilterString: USB ids appear in hex as lsusb and the configuration
// write them, in errors (%v, %+v) as well.
func TestFilterString(t *testing.T) {
	tests := []struct {
		f    Filter
		want string
	}{
		{Filter{}, "any device"},
		{Filter{VendorID: 0x051d}, "vendor_id 051d"},
		{Filter{VendorID: 0x051d, ProductID: 0x0002, Serial: "3B1", Bus: 1, Port: "1.4"}, `vendor_id 051d product_id 0002 serial "3B1" bus 1 port 1.4`},
		{Filter{ProductID: 0xffff}, "product_id ffff"},
	}
	for _, tt := range tests {
		for _, verb := range []string{"%s", "%v", "%+v"} {
			if got := fmt.Sprintf(verb, tt.f); got != tt.want {
				t.Errorf("%s of %#v = %q, want %q", verb, tt.f, got, tt.want)
			}
		}
	}
}
