package bridge

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// step is one thing that happens to a tracker: a reading with a status (and
// optional alarm text), a failed poll ("lost"), or time passing ("tick").
type step struct {
	at       time.Duration
	do       string // status to read, "lost", "gone" or "tick"
	alarm    string
	want     []EventType
	critical bool
}

func TestTrackerUpsmonRules(t *testing.T) {
	rules := Rules{DeadTime: 15 * time.Second, NoCommWarnTime: 300 * time.Second, OffDuration: 30 * time.Second, RBWarnTime: 12 * time.Hour}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first OL is silent", []step{{0, "OL", "", nil, false}, {time.Second, "OL CHRG", "", nil, false}}},
		{"ONBATT at start-up if already on battery", []step{{0, "OB DISCHRG", "", []EventType{EventOnBatt}, false}}},
		{"LOWBATT and critical at start-up", []step{{0, "OB LB", "", []EventType{EventOnBatt, EventLowBatt}, true}}},
		{"outage then return", []step{
			{0, "OL", "", nil, false},
			{time.Second, "OB DISCHRG", "", []EventType{EventOnBatt}, false},
			{2 * time.Second, "OB DISCHRG", "", nil, false},
			{3 * time.Second, "OB DISCHRG LB", "", []EventType{EventLowBatt}, true},
			{4 * time.Second, "OL CHRG", "", []EventType{EventOnline}, false},
		}},
		{"LB on mains is not critical", []step{{0, "OL LB", "", []EventType{EventLowBatt}, false}}},
		{"OB LB while calibrating is not critical", []step{
			{0, "OL", "", nil, false},
			{time.Second, "OB LB CAL", "", []EventType{EventOnBatt, EventLowBatt, EventCal}, false},
			{2 * time.Second, "OL", "", []EventType{EventOnline, EventNotCal}, false},
		}},
		{"FSD is always critical, notified once", []step{
			{0, "OL", "", nil, false},
			{time.Second, "FSD OL", "", []EventType{EventFSD}, true},
			{2 * time.Second, "FSD OL", "", nil, true},
		}},
		{"COMMBAD once, COMMOK on recovery, no ONLINE from OL", []step{
			{0, "OL", "", nil, false},
			{time.Second, "lost", "", []EventType{EventCommBad}, false},
			{2 * time.Second, "lost", "", nil, false},
			{3 * time.Second, "OL", "", []EventType{EventCommOK}, false},
		}},
		{"COMMBAD when the first poll fails", []step{{0, "lost", "", []EventType{EventCommBad}, false}}},
		{"comm lost on mains never critical, NOCOMM repeats", []step{
			{0, "OL", "", nil, false},
			{time.Second, "lost", "", []EventType{EventCommBad}, false},
			{200 * time.Second, "tick", "", nil, false},
			{300 * time.Second, "tick", "", []EventType{EventNoComm}, false},
			{400 * time.Second, "tick", "", nil, false},
			{600 * time.Second, "tick", "", []EventType{EventNoComm}, false},
		}},
		{"comm lost on battery: critical only after dead time", []step{
			{0, "OL", "", nil, false},
			{time.Second, "OB", "", []EventType{EventOnBatt}, false},
			{2 * time.Second, "lost", "", []EventType{EventCommBad}, false},
			{16 * time.Second, "tick", "", nil, false},
			{17*time.Second + time.Millisecond, "tick", "", nil, true},
			{18 * time.Second, "OB", "", []EventType{EventCommOK}, false},
		}},
		{"a blip shorter than dead time is not critical", []step{
			{0, "OB", "", []EventType{EventOnBatt}, false},
			{time.Second, "lost", "", []EventType{EventCommBad}, false},
			{10 * time.Second, "OB", "", []EventType{EventCommOK}, false},
		}},
		{"OFF critical after off duration", []step{
			{0, "OL", "", nil, false},
			{time.Second, "OFF", "", []EventType{EventOff}, false},
			{30 * time.Second, "tick", "", nil, false},
			{31 * time.Second, "tick", "", nil, true},
			{32 * time.Second, "OL", "", []EventType{EventNotOff}, false},
		}},
		{"REPLBATT repeats after RBWARNTIME only", []step{
			{0, "OL RB", "", []EventType{EventReplBatt}, false},
			{time.Hour, "OL RB", "", nil, false},
			{12 * time.Hour, "OL RB", "", []EventType{EventReplBatt}, false},
		}},
		{"toggles", []step{
			{0, "OL", "", nil, false},
			{1 * time.Second, "OL BYPASS OVER", "", []EventType{EventBypass, EventOver}, false},
			{2 * time.Second, "OL TRIM", "", []EventType{EventNotBypass, EventNotOver, EventTrim}, false},
			{3 * time.Second, "OL BOOST ECO", "", []EventType{EventNotTrim, EventBoost, EventEco}, false},
			{4 * time.Second, "OL", "", []EventType{EventNotBoost, EventNotEco}, false},
		}},
		{"ALARM re-notified when the text changes", []step{
			{0, "OL ALARM", "[Fan failure]", []EventType{EventAlarm}, false},
			{time.Second, "OL ALARM", "[Fan failure]", nil, false},
			{2 * time.Second, "OL ALARM", "[Fan failure][Overheat]", []EventType{EventAlarm}, false},
			{3 * time.Second, "OL", "", []EventType{EventNotAlarm}, false},
		}},
		{"unknown tokens produce no events", []step{{0, "OL", "", nil, false}, {time.Second, "OL HE", "", nil, false}}},
		{"gone is communication lost", []step{{0, "OB", "", []EventType{EventOnBatt}, false}, {time.Second, "gone", "", []EventType{EventCommBad}, false}}},
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker("ups1", rules)
			for i, s := range tt.steps {
				now := base.Add(s.at)
				var evs []Event
				switch s.do {
				case "lost":
					evs, _ = tr.CommLost(now)
				case "gone":
					evs, _ = tr.MarkGone(now)
				case "tick":
					evs, _ = tr.Tick(now)
				default:
					v := Vars{"ups.status": s.do}
					if s.alarm != "" {
						v["ups.alarm"] = s.alarm
					}
					evs, _ = tr.Reading(now, v, nil)
				}
				var got []EventType
				for _, e := range evs {
					got = append(got, e.Type)
					if e.UPS != "ups1" || !e.Time.Equal(now) || e.Message == "" {
						t.Errorf("step %d: malformed event %+v", i, e)
					}
				}
				if !reflect.DeepEqual(got, s.want) {
					t.Errorf("step %d (%s at %s): events %v, want %v", i, s.do, s.at, got, s.want)
				}
				if tr.Critical() != s.critical {
					t.Errorf("step %d (%s at %s): critical %v, want %v", i, s.do, s.at, tr.Critical(), s.critical)
				}
			}
		})
	}
}

func TestTrackerChangeDetection(t *testing.T) {
	tr := NewTracker("u", DefaultRules())
	now := time.Now()
	if _, changed := tr.Reading(now, Vars{"ups.status": "OL", "battery.charge": "100"}, nil); !changed {
		t.Error("first reading not a change")
	}
	if _, changed := tr.Reading(now.Add(time.Second), Vars{"ups.status": "OL", "battery.charge": "100"}, nil); changed {
		t.Error("identical reading reported as a change")
	}
	if _, changed := tr.Reading(now.Add(2*time.Second), Vars{"ups.status": "OL", "battery.charge": "99"}, nil); !changed {
		t.Error("changed charge not a change")
	}
	if _, changed := tr.CommLost(now.Add(3 * time.Second)); !changed {
		t.Error("comm lost not a change")
	}
	st := tr.State()
	if st.Comm || st.Vars["battery.charge"] != "99" {
		t.Errorf("state after comm loss: comm=%v vars=%v (previous vars must be kept)", st.Comm, st.Vars)
	}
}

func TestAlarmMessageCarriesText(t *testing.T) {
	tr := NewTracker("u", DefaultRules())
	evs, _ := tr.Reading(time.Now(), Vars{"ups.status": "OL ALARM", "ups.alarm": "Fan failure"}, nil)
	if len(evs) != 1 || !strings.Contains(evs[0].Message, "Fan failure") {
		t.Fatalf("events %+v", evs)
	}
}

func BenchmarkTrackerReading(b *testing.B) {
	vars := []Vars{
		{"ups.status": "OL", "battery.charge": "100", "battery.runtime": "2400", "ups.load": "23", "input.voltage": "230.1"},
		{"ups.status": "OB DISCHRG", "battery.charge": "99", "battery.runtime": "2300", "ups.load": "23", "input.voltage": "0"},
	}
	tr := NewTracker("u", DefaultRules())
	now := time.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tr.Reading(now.Add(time.Duration(i)*time.Second), vars[(i/100)%2], nil)
	}
}

func BenchmarkTrackerSteady(b *testing.B) {
	v := Vars{"ups.status": "OL", "battery.charge": "100", "battery.runtime": "2400", "ups.load": "23", "input.voltage": "230.1"}
	tr := NewTracker("u", DefaultRules())
	now := time.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tr.Reading(now.Add(time.Duration(i)*time.Second), v, nil)
	}
}

func ExampleParseStatus() {
	s := ParseStatus("OB DISCHRG LB")
	fmt.Println(s.Has(OB), s.Has(LB), s.Has(OL), s.Tokens)
	// Output: true true false [OB DISCHRG LB]
}

func TestCriticalRules(t *testing.T) {
	r := CriticalRules{DeadTime: 15 * time.Second, OffDuration: 30 * time.Second, LowBatteryGrace: 10 * time.Second}
	st := func(s string) Flags { return ParseStatus(s).Flags }
	for _, tc := range []struct {
		name string
		in   CriticalInput
		want bool
	}{
		{"fsd", CriticalInput{Status: st("OL FSD")}, true},
		{"ob lb in grace", CriticalInput{Status: st("OB LB"), LowBatteryFor: 9 * time.Second}, false},
		{"ob lb after grace", CriticalInput{Status: st("OB LB"), LowBatteryFor: 10 * time.Second}, true},
		{"ob lb calibrating", CriticalInput{Status: st("OB LB CAL"), LowBatteryFor: time.Hour}, false},
		{"ol lb", CriticalInput{Status: st("OL LB"), LowBatteryFor: time.Hour}, false},
		{"off short", CriticalInput{Status: st("OFF"), OffFor: 29 * time.Second}, false},
		{"off long", CriticalInput{Status: st("OFF"), OffFor: 30 * time.Second}, true},
		{"ob dead", CriticalInput{Status: st("OB"), CommLost: true, SinceGood: 16 * time.Second}, true},
		{"ob not yet dead", CriticalInput{Status: st("OB"), CommLost: true, SinceGood: 15 * time.Second}, false},
		{"ol comm lost", CriticalInput{Status: st("OL"), CommLost: true, SinceGood: time.Hour}, false},
		{"ob talking", CriticalInput{Status: st("OB"), SinceGood: time.Hour}, false},
	} {
		if got, why := Critical(r, tc.in); got != tc.want {
			t.Errorf("%s: Critical = %v (%s), want %v", tc.name, got, why, tc.want)
		}
	}
	if got, _ := Critical(CriticalRules{OffDuration: -1}, CriticalInput{Status: st("OFF"), OffFor: time.Hour}); got {
		t.Error("negative off_duration must disable the OFF rule")
	}
}
