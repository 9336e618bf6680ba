package httpapi

import "testing"

func TestParseProcStat(t *testing.T) {
	tail := " S 1 1 1 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 4242 1605103616 3000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0"
	tests := []struct {
		name    string
		in      string
		want    procStat
		wantErr bool
	}{
		{"plain", "1234 (upsbridge)" + tail, procStat{utime: 250, stime: 75, starttime: 4242, vsize: 1605103616, rss: 3000}, false},
		{"command with spaces and parentheses", "1234 (a) b (c))" + tail, procStat{utime: 250, stime: 75, starttime: 4242, vsize: 1605103616, rss: 3000}, false},
		{"no parenthesis", "1234 upsbridge S 1", procStat{}, true},
		{"truncated", "1234 (upsbridge) S 1 1 1 0 -1 4194560 1234 0 0 0 250", procStat{}, true},
		{"not a number", "1234 (upsbridge) S 1 1 1 0 -1 4194560 1234 0 0 0 x 75 0 0 20 0 9 0 4242 1605103616 3000 1", procStat{}, true},
		{"empty", "", procStat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseProcStat = %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseBootTime(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"cpu  1 2 3\nintr 5\nbtime 1795249860\nprocesses 9\n", 1795249860, false},
		{"cpu  1 2 3\n", 0, true},
		{"btime x\n", 0, true},
	}
	for _, tt := range tests {
		got, err := parseBootTime([]byte(tt.in))
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("parseBootTime(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
