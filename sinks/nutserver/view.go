package nutserver

import (
	"sort"
	"strconv"
	"strings"

	"github.com/upsbridge/upsbridge/bridge"
)

// view is one state of a UPS prepared for serving. It is immutable.
type view struct {
	st     *bridge.State
	names  []string          // variable names, sorted as upsd's tree
	lower  map[string]string // lower-case name -> name, for case-insensitive lookups
	fsd    bool              // the bridge latched FSD and the status lacks it
	cmds   []string          // sorted
	cmdSet map[string]*bridge.Command
	rw     map[string]*bridge.Writable // lower-case name
}

func newView(st *bridge.State) *view {
	v := &view{st: st, lower: make(map[string]string, len(st.Vars))}
	v.names = make([]string, 0, len(st.Vars))
	for k := range st.Vars {
		v.names = append(v.names, k)
		v.lower[strings.ToLower(k)] = k
	}
	// upsd keeps variables in a tree ordered by strcasecmp.
	sort.Slice(v.names, func(i, j int) bool {
		a, b := strings.ToLower(v.names[i]), strings.ToLower(v.names[j])
		if a != b {
			return a < b
		}
		return v.names[i] < v.names[j]
	})
	v.fsd = st.Status.Has(bridge.FSD) && !hasToken(st.Vars[bridge.VarStatus], "FSD")
	if st.Info != nil {
		v.cmdSet = make(map[string]*bridge.Command, len(st.Info.Commands))
		for i := range st.Info.Commands {
			c := &st.Info.Commands[i]
			v.cmds = append(v.cmds, c.Name)
			v.cmdSet[strings.ToLower(c.Name)] = c
		}
		sort.Slice(v.cmds, func(i, j int) bool { return strings.ToLower(v.cmds[i]) < strings.ToLower(v.cmds[j]) })
		v.rw = make(map[string]*bridge.Writable, len(st.Info.Writable))
		for i := range st.Info.Writable {
			w := &st.Info.Writable[i]
			v.rw[strings.ToLower(w.Name)] = w
		}
	}
	return v
}

func hasToken(status, tok string) bool {
	for _, f := range strings.Fields(status) {
		if f == tok {
			return true
		}
	}
	return false
}

// name resolves a variable name case-insensitively, as upsd does.
func (v *view) name(n string) (string, bool) {
	if _, ok := v.st.Vars[n]; ok {
		return n, true
	}
	k, ok := v.lower[strings.ToLower(n)]
	return k, ok
}

// value returns the served value of a variable: as the source reported
// it, with "FSD " in front of ups.status while forced shutdown is latched
// (upsd does the same).
func (v *view) value(name string, localFSD bool) string {
	val := v.st.Vars[name]
	if name == bridge.VarStatus && (v.fsd || localFSD) && !hasToken(val, "FSD") {
		if val == "" {
			return "FSD"
		}
		return "FSD " + val
	}
	return val
}

// writable returns the variable's writable description, if it is RW and
// present.
func (v *view) writable(name string) *bridge.Writable {
	if v.rw == nil {
		return nil
	}
	return v.rw[strings.ToLower(name)]
}

// rwNames lists the writable variables that exist, in LIST order.
func (v *view) rwNames() []string {
	if len(v.rw) == 0 {
		return nil
	}
	var out []string
	for _, n := range v.names {
		if v.writable(n) != nil {
			out = append(out, n)
		}
	}
	return out
}

// typeWords is GET TYPE's answer: [RW] [ENUM] [RANGE] STRING:n|NUMBER.
func typeWords(w *bridge.Writable) string {
	if w == nil {
		return "NUMBER"
	}
	var b strings.Builder
	b.WriteString("RW ")
	if len(w.Enum) > 0 || w.Type == "ENUM" {
		b.WriteString("ENUM ")
	}
	if len(w.Ranges) > 0 || w.Type == "RANGE" {
		b.WriteString("RANGE ")
	}
	if n, ok := stringLen(w); ok {
		b.WriteString("STRING:" + strconv.Itoa(n))
	} else {
		b.WriteString("NUMBER")
	}
	return b.String()
}

// stringLen returns the maximum length of a STRING writable.
func stringLen(w *bridge.Writable) (int, bool) {
	t, ok := strings.CutPrefix(w.Type, "STRING")
	if !ok {
		return 0, false
	}
	if n, err := strconv.Atoi(strings.TrimPrefix(t, ":")); err == nil && n > 0 {
		return n, true
	}
	return 255, true
}

// checkValue applies upsd's SET checks: TOO-LONG for STRING:n, and
// INVALID-VALUE outside the ENUM or every RANGE (compared as integers).
func checkValue(w *bridge.Writable, val string) string {
	if n, ok := stringLen(w); ok && len(val) > n {
		return "TOO-LONG"
	}
	if len(w.Enum) > 0 {
		for _, e := range w.Enum {
			if e == val {
				return ""
			}
		}
		return "INVALID-VALUE"
	}
	if len(w.Ranges) > 0 {
		n := atoi(val)
		for _, r := range w.Ranges {
			if n >= int64(r[0]) && n <= int64(r[1]) {
				return ""
			}
		}
		return "INVALID-VALUE"
	}
	return ""
}

// atoi parses like C's atoi: leading blanks, a sign, digits; 0 otherwise.
func atoi(s string) int64 {
	s = strings.TrimLeft(s, " \t")
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	var n int64
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + int64(s[i]-'0')
		if n > 1<<40 {
			break
		}
	}
	if neg {
		return -n
	}
	return n
}

func formatRange(f float64) string {
	return strconv.FormatInt(int64(f), 10)
}
