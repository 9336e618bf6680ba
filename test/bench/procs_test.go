//go:build bench

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/mqttconn"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/upsbridge/upsbridge/agent"
	"github.com/upsbridge/upsbridge/internal/agent/executor"
	"github.com/upsbridge/upsbridge/internal/agent/intake"
	"github.com/upsbridge/upsbridge/internal/agent/policy"
	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// ---------------------------------------------------------------- binaries

// binaries are the upsbridge builds measured: plain (`go build`: cgo, with
// USB), stripped, and the pure-Go build without USB (CGO_ENABLED=0 -tags
// nousb, stripped) that agents and NUT-only bridges run.
type binaries struct {
	Plain, Stripped, PureGo string
	PlainSize               int64
	StrippedSize            int64
	PureGoSize              int64
}

func buildBinaries(t testing.TB) binaries {
	t.Helper()
	dir := t.TempDir()
	root := harness.RepoRoot(t)
	var b binaries
	for _, v := range []struct {
		out  *string
		size *int64
		env  []string
		args []string
	}{
		{&b.Plain, &b.PlainSize, nil, []string{"build", "-o", filepath.Join(dir, "upsbridge"), "./cmd/upsbridge"}},
		{&b.Stripped, &b.StrippedSize, nil, []string{"build", "-ldflags=-s -w", "-o", filepath.Join(dir, "upsbridge-stripped"), "./cmd/upsbridge"}},
		{&b.PureGo, &b.PureGoSize, []string{"CGO_ENABLED=0"}, []string{"build", "-tags", "nousb", "-ldflags=-s -w", "-o", filepath.Join(dir, "upsbridge-purego"), "./cmd/upsbridge"}},
	} {
		cmd := exec.Command("go", v.args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), v.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(v.args, " "), err, out)
		}
		*v.out = v.args[len(v.args)-2]
		st, err := os.Stat(*v.out)
		if err != nil {
			t.Fatal(err)
		}
		*v.size = st.Size()
	}
	return b
}

// ---------------------------------------------------------------- processes

// proc is a child process started by the suite and stopped by its PID.
type proc struct {
	name  string
	cmd   *exec.Cmd
	done  chan struct{}
	out   *harness.SafeBuffer
	start time.Time
}

func startProc(t testing.TB, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{}), out: &harness.SafeBuffer{}}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM to the PID, then SIGKILL after 5 s.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// usage is a process's CPU time (user+system, all threads) and resident set.
type usage struct {
	CPU      time.Duration
	SchedCPU time.Duration // on-CPU time of the live threads, ns resolution
	RSS, HWM int64         // bytes
	// RSSAnon is private memory (heap, stacks); RSSFile is mapped file
	// pages (the binary's text and data that were touched).
	RSSAnon, RSSFile int64
}

var clkTck = int64(100) // Linux USER_HZ

func procUsage(pid int) (usage, error) {
	var u usage
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return u, fmt.Errorf("odd /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+2:])
	// fields after ")": state(3) ... utime is field 14, stime 15 (1-based over the whole line)
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	u.CPU = time.Duration((ut+st)*1000/clkTck) * time.Millisecond
	// Nanosecond CPU time from the scheduler, summed over the live threads
	// (/proc/<pid>/stat only has 10 ms ticks).
	if tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); err == nil {
		var ns int64
		for _, tk := range tasks {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, tk.Name())); err == nil {
				if f := strings.Fields(string(b)); len(f) > 0 {
					n, _ := strconv.ParseInt(f[0], 10, 64)
					ns += n
				}
			}
		}
		u.SchedCPU = time.Duration(ns)
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fs[0], 10, 64)
		switch k {
		case "VmRSS":
			u.RSS = n * 1024
		case "VmHWM":
			u.HWM = n * 1024
		case "RssAnon":
			u.RSSAnon = n * 1024
		case "RssFile":
			u.RSSFile = n * 1024
		}
	}
	return u, nil
}

// ---------------------------------------------------------------- upsbridge

type bridgeOpts struct {
	Prefix     string
	Broker     string
	UPSD       string
	UPS        string // NUT name or "*"
	SourceID   string
	Poll, OnBt time.Duration // 0 = the source's defaults
	StateDir   string
	Env        []string // extra environment (e.g. GODEBUG=gctrace=1)
	Extra      string   // extra top-level YAML
}

func (o bridgeOpts) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mqtt:\n  url: %s\n  topic_prefix: %s\n", o.Broker, o.Prefix)
	// A bridge id of its own per process: the MQTT client ids derive from
	// it, and two clients with one id would keep kicking each other.
	fmt.Fprintf(&b, "bridge:\n  id: %s\n  state_dir: %s\n", strings.ReplaceAll(o.Prefix, "/", "-"), o.StateDir)
	fmt.Fprintf(&b, "sources:\n  - id: %s\n    type: nut\n    address: %s\n    ups: %q\n", o.SourceID, o.UPSD, o.UPS)
	if o.Poll > 0 {
		fmt.Fprintf(&b, "    poll_interval: %s\n", o.Poll)
	}
	if o.OnBt > 0 {
		fmt.Fprintf(&b, "    poll_interval_on_battery: %s\n", o.OnBt)
	}
	if o.Extra != "" {
		b.WriteString(strings.TrimSpace(o.Extra) + "\n")
	}
	if *extraYAMLFlag != "" {
		b.WriteString(strings.TrimSpace(*extraYAMLFlag) + "\n")
	}
	return b.String()
}

// startBridge runs the upsbridge binary with the config written to a file.
func startBridge(t testing.TB, bin string, o bridgeOpts) (*proc, string) {
	t.Helper()
	dir := t.TempDir()
	if o.StateDir == "" {
		o.StateDir = filepath.Join(dir, "state")
	}
	cfg := o.yaml()
	path := filepath.Join(dir, "upsbridge.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "upsbridge", append([]string{"UPSBRIDGE_LOG__FORMAT=json"}, o.Env...), bin, "run", "-c", path)
	return p, cfg
}

// ---------------------------------------------------------------- upsd reference poller

// refPoller asks upsd for ups.status every few milliseconds on one kept
// connection (what `upsc` shows, without forking a process per look) and
// records when each value was first served.
type refPoller struct {
	conn   net.Conn
	r      *bufio.Reader
	ups    string
	Period time.Duration

	mu      sync.Mutex
	changes []change
	cur     string
	stop    chan struct{}
	done    chan struct{}
	err     error
}

type change struct {
	At    time.Time
	Value string
}

func startRefPoller(t testing.TB, addr, ups string, period time.Duration) *refPoller {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("reference poller: %v", err)
	}
	p := &refPoller{conn: c, r: bufio.NewReader(c), ups: ups, Period: period, stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	t.Cleanup(p.Close)
	return p
}

// LocalPort is the poller's own port, so request counts can leave it out.
func (p *refPoller) LocalPort() int { return p.conn.LocalAddr().(*net.TCPAddr).Port }

func (p *refPoller) query(line string) (string, error) {
	_ = p.conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := p.conn.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	l, err := p.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

func (p *refPoller) run() {
	defer close(p.done)
	tick := time.NewTicker(p.Period)
	defer tick.Stop()
	prefix := fmt.Sprintf("VAR %s ups.status \"", p.ups)
	for {
		l, err := p.query("GET VAR " + p.ups + " ups.status")
		now := time.Now()
		if err != nil {
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
			return
		}
		v := l
		if strings.HasPrefix(l, prefix) {
			v = strings.TrimSuffix(strings.TrimPrefix(l, prefix), `"`)
		}
		p.mu.Lock()
		if v != p.cur {
			p.cur = v
			p.changes = append(p.changes, change{now, v})
		}
		p.mu.Unlock()
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
	}
}

// Close stops the poller.
func (p *refPoller) Close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	p.conn.Close()
}

// WaitServed returns when upsd first served want after `after`.
func (p *refPoller) WaitServed(want string, after time.Time, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		for _, c := range p.changes {
			if c.Value == want && !c.At.Before(after) {
				p.mu.Unlock()
				return c.At, nil
			}
		}
		err := p.err
		p.mu.Unlock()
		if err != nil {
			return time.Time{}, fmt.Errorf("reference poller: %w", err)
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("upsd did not serve %q within %s", want, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// numLogins asks upsd for NUMLOGINS over the reference connection's twin.
func numLogins(addr, ups string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "GET NUMLOGINS %s\n", ups)
	l, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, err
	}
	f := strings.Fields(l)
	if len(f) != 3 || f[0] != "NUMLOGINS" {
		return 0, fmt.Errorf("upsd: %s", strings.TrimSpace(l))
	}
	return strconv.Atoi(f[2])
}

// ---------------------------------------------------------------- request counting

// upsdTraffic sums, over upsd's established connections on port (leaving
// out the given client ports), the TCP data segments and bytes upsd
// received, as the kernel counts them (ss -ti). Every NUT request is one
// line sent in one write, so data segments are requests.
type upsdTraffic struct {
	Conns       int
	Segs, Bytes int64
	perConn     map[string][3]int64 // data segments in, bytes in, bytes out
}

var (
	ssPeerRE  = regexp.MustCompile(`127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:(\d+)`)
	ssSegsRE  = regexp.MustCompile(`data_segs_in:(\d+)`)
	ssBytesRE = regexp.MustCompile(`bytes_received:(\d+)`)
	ssSentRE  = regexp.MustCompile(`bytes_sent:(\d+)`)
)

func readUpsdTraffic(port int, exclude ...int) (upsdTraffic, error) {
	out, err := exec.Command("ss", "-tinH", "state", "established", fmt.Sprintf("( sport = :%d )", port)).Output()
	if err != nil {
		return upsdTraffic{}, fmt.Errorf("ss: %w", err)
	}
	tr := upsdTraffic{perConn: map[string][3]int64{}}
	ex := map[string]bool{}
	for _, e := range exclude {
		ex[strconv.Itoa(e)] = true
	}
	var peer string
	for _, l := range strings.Split(string(out), "\n") {
		if m := ssPeerRE.FindStringSubmatch(l); m != nil {
			peer = m[2]
			if ex[peer] {
				peer = ""
			}
			continue
		}
		if peer == "" {
			continue
		}
		var v [3]int64
		if m := ssSentRE.FindStringSubmatch(l); m != nil {
			v[2], _ = strconv.ParseInt(m[1], 10, 64)
		}
		if m := ssSegsRE.FindStringSubmatch(l); m != nil {
			v[0], _ = strconv.ParseInt(m[1], 10, 64)
		}
		if m := ssBytesRE.FindStringSubmatch(l); m != nil {
			v[1], _ = strconv.ParseInt(m[1], 10, 64)
		}
		tr.perConn[peer] = v
		peer = ""
	}
	for _, v := range tr.perConn {
		tr.Conns++
		tr.Segs += v[0]
		tr.Bytes += v[1]
	}
	return tr, nil
}

// load is what upsd received and sent per second.
type load struct {
	Req, BytesIn, BytesOut float64
	Conns                  int
}

func (l load) String() string {
	return fmt.Sprintf("%.2f req/s; in %.0f B/s, out %.0f B/s; %d conn", l.Req, l.BytesIn, l.BytesOut, l.Conns)
}

// trafficRate is the load between two readings, over the connections
// present in both.
func trafficRate(a, b upsdTraffic, d time.Duration) load {
	var l load
	var v [3]int64
	for k, vb := range b.perConn {
		va, ok := a.perConn[k]
		if !ok {
			continue
		}
		l.Conns++
		for i := range v {
			v[i] += vb[i] - va[i]
		}
	}
	s := d.Seconds()
	l.Req, l.BytesIn, l.BytesOut = float64(v[0])/s, float64(v[1])/s, float64(v[2])/s
	return l
}

// ---------------------------------------------------------------- MQTT recorder

// recorder is an MQTT subscriber that keeps every message with its arrival
// time, and counts them.
type recorder struct {
	mu    sync.Mutex
	msgs  []harness.Msg
	count int64
	keep  func(topic string) bool
	cm    *autopaho.ConnectionManager
	stop  context.CancelFunc
}

func startRecorder(t testing.TB, broker string, keep func(topic string) bool, filters ...string) *recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder{keep: keep, stop: cancel}
	subs := make([]paho.SubscribeOptions, len(filters))
	for i, f := range filters {
		subs[i] = paho.SubscribeOptions{Topic: f, QoS: 1}
	}
	up := make(chan error, 1)
	cm, err := mqttconn.Connect(ctx, mqttconn.ConnOptions{URL: broker, ClientID: fmt.Sprintf("bench-rec-%d", time.Now().UnixNano())}, mqttconn.Handlers{
		OnUp: func(cm *autopaho.ConnectionManager) {
			go func() {
				sctx, c := context.WithTimeout(ctx, 10*time.Second)
				defer c()
				_, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: subs})
				select {
				case up <- err:
				default:
				}
			}()
		},
		OnPublish: func(topic string, payload []byte, retained bool) {
			now := time.Now()
			r.mu.Lock()
			r.count++
			if r.keep == nil || r.keep(topic) {
				r.msgs = append(r.msgs, harness.Msg{Topic: topic, Payload: string(payload), Retained: retained, At: now})
			}
			r.mu.Unlock()
		},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r.cm = cm
	t.Cleanup(r.Close)
	select {
	case err := <-up:
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("recorder: no subscription within 10s")
	}
	return r
}

func (r *recorder) Close() {
	ctx, c := context.WithTimeout(context.Background(), time.Second)
	defer c()
	_ = r.cm.Disconnect(ctx)
	r.stop()
}

// Count is the number of messages received so far.
func (r *recorder) Count() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// find returns the first kept message from index from on that matches.
func (r *recorder) scan(from int, match func(m harness.Msg) bool) (harness.Msg, int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := from; i < len(r.msgs); i++ {
		if match(r.msgs[i]) {
			return r.msgs[i], i, true
		}
	}
	return harness.Msg{}, len(r.msgs), false
}

// Len is the number of kept messages.
func (r *recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// Wait returns the first kept message after index from that matches.
func (r *recorder) Wait(from int, timeout time.Duration, match func(m harness.Msg) bool) (harness.Msg, error) {
	deadline := time.Now().Add(timeout)
	for {
		if m, _, ok := r.scan(from, match); ok {
			return m, nil
		}
		if time.Now().After(deadline) {
			return harness.Msg{}, fmt.Errorf("no matching MQTT message within %s", timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// each calls f for every kept message from index from on.
func (r *recorder) each(from int, f func(m harness.Msg)) {
	r.mu.Lock()
	msgs := append([]harness.Msg(nil), r.msgs[min(from, len(r.msgs)):]...)
	r.mu.Unlock()
	for _, m := range msgs {
		f(m)
	}
}

func eventType(m harness.Msg) string {
	var e mqttwire.EventPayload
	if json.Unmarshal([]byte(m.Payload), &e) != nil {
		return ""
	}
	return e.Type
}

func stateOf(m harness.Msg) (mqttwire.StatePayload, bool) {
	var s mqttwire.StatePayload
	if json.Unmarshal([]byte(m.Payload), &s) != nil {
		return s, false
	}
	return s, true
}

// ---------------------------------------------------------------- upsbridge agents

// decision is one agent's decision.
type decision struct {
	Agent int
	Kind  policy.ActionKind
	At    time.Time
}

// agentFleet runs n upsbridge shutdown agents in this process, each with
// its own MQTT connection, wired as `upsbridge run` wires its agent
// section (intake.Intake + agent.Agent, dry run), recording every
// decision through the agent's OnDecision hook.
type agentFleet struct {
	mu        sync.Mutex
	decisions []decision
	up        sync.WaitGroup
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

func startAgents(t testing.TB, broker, prefix, ups string, n int, tag string) *agentFleet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &agentFleet{cancel: cancel}
	log := slog.New(slog.DiscardHandler)
	f.up.Add(n)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("bench%s-%d", tag, i)
		var once sync.Once
		w, err := intake.New(intake.Options{
			Conn:        mqttconn.ConnOptions{URL: broker, ClientID: "upsbridge-agent-" + id, Logger: log, Will: &paho.WillMessage{Topic: mqttwire.Topics{Prefix: prefix}.AgentState(id), Payload: []byte(mqttwire.Offline), Retain: true, QoS: 1}},
			TopicPrefix: prefix, Supplies: []intake.Supply{{UPS: ups}}, MaxStateAge: 90 * time.Second, Logger: log,
			OnUp: func(context.Context) { once.Do(f.up.Done) },
		})
		if err != nil {
			t.Fatal(err)
		}
		i := i
		a, err := agent.New(agent.Options{
			ID: id, TopicPrefix: prefix,
			Policy:     policy.Config{Supplies: []policy.Supply{{UPS: ups, Power: 1}}, MinSupplies: 1, DeadTime: 15 * time.Second, MaxStateAge: 90 * time.Second, OffDuration: 30 * time.Second},
			FinalDelay: 0, DryRun: true, Exec: executor.DryRunExecutor{Logger: log}, Publish: w.Publish, Orders: w.Orders, Logger: log,
			OnDecision: func(act policy.Action, _ policy.Now) {
				now := time.Now()
				if act.Kind == policy.ActWarn {
					return
				}
				f.mu.Lock()
				f.decisions = append(f.decisions, decision{i, act.Kind, now})
				f.mu.Unlock()
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		f.wg.Add(2)
		go func() { defer f.wg.Done(); _ = w.Run(ctx) }()
		go func() { defer f.wg.Done(); _ = a.Run(ctx, w) }()
	}
	done := make(chan struct{})
	go func() { f.up.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("%d agents not connected within 60s", n)
	}
	t.Cleanup(f.Stop)
	return f
}

// Stop stops every agent.
func (f *agentFleet) Stop() {
	f.cancel()
	f.wg.Wait()
}

// Decisions returns the decisions of kind k made after `after`, one per
// agent (the first), sorted by time.
func (f *agentFleet) Decisions(k policy.ActionKind, after time.Time) []decision {
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[int]bool{}
	var out []decision
	for _, d := range f.decisions {
		if d.Kind == k && d.At.After(after) && !seen[d.Agent] {
			seen[d.Agent] = true
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// WaitDecisions waits until n agents decided k after `after`.
func (f *agentFleet) WaitDecisions(k policy.ActionKind, after time.Time, n int, timeout time.Duration) ([]decision, error) {
	deadline := time.Now().Add(timeout)
	for {
		ds := f.Decisions(k, after)
		if len(ds) >= n {
			return ds, nil
		}
		if time.Now().After(deadline) {
			return ds, fmt.Errorf("%d of %d agents decided %s within %s", len(ds), n, k, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// ---------------------------------------------------------------- upsmon

// upsmon is Debian's real upsmon as a secondary in its own config folder,
// run as one root process in the foreground (-p -F), stopped by PID. Its
// NOTIFYCMD appends `date +%s.%N` and the type to notify.log; its
// SHUTDOWNCMD only records the call in shutdown.log.
type upsmon struct {
	p   *proc
	dir string
}

var upsmonPIDMu sync.Mutex

const packagedUpsmonPID = "/run/nut/upsmon.pid"

func upsmonBin(t testing.TB) string {
	t.Helper()
	return filepath.Join(harness.NUTBinDir(t), "upsmon")
}

func upsmonConf(addr, ups string, pollFreq, pollAlert int, dir string) string {
	return fmt.Sprintf(`MONITOR %s@%s 1 %s %s secondary
MINSUPPLIES 1
POLLFREQ %d
POLLFREQALERT %d
HOSTSYNC 60
DEADTIME 15
FINALDELAY 0
NOTIFYCMD %s/notify.sh
NOTIFYFLAG ONLINE EXEC
NOTIFYFLAG ONBATT EXEC
NOTIFYFLAG LOWBATT EXEC
NOTIFYFLAG FSD EXEC
NOTIFYFLAG COMMOK EXEC
NOTIFYFLAG COMMBAD EXEC
NOTIFYFLAG SHUTDOWN EXEC
SHUTDOWNCMD "%s/shutdown.sh"
`, ups, addr, harness.NUTMonUser, harness.NUTMonPassword, pollFreq, pollAlert, dir, dir)
}

// startUpsmon starts one upsmon. 2.8.0 always writes the packaged PID file
// and refuses to start while it names a live process, so starts are
// serialised and the file is removed once it names our new process.
func startUpsmon(t testing.TB, addr, ups string, pollFreq, pollAlert int) *upsmon {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("notify.sh", fmt.Sprintf("#!/bin/sh\necho \"$(date +%%s.%%N) $NOTIFYTYPE\" >> %s/notify.log\n", dir), 0o755)
	write("shutdown.sh", fmt.Sprintf("#!/bin/sh\necho \"$(date +%%s.%%N) SHUTDOWNCMD\" >> %s/shutdown.log\n", dir), 0o755)
	write("upsmon.conf", upsmonConf(addr, ups, pollFreq, pollAlert, dir), 0o600)
	upsmonPIDMu.Lock()
	defer upsmonPIDMu.Unlock()
	removeOurPIDFile(0)
	p := startProc(t, "upsmon", []string{"NUT_CONFPATH=" + dir, "NUT_STATEPATH=" + dir, "NUT_ALTPIDPATH=" + dir}, upsmonBin(t), "-p", "-F")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(packagedUpsmonPID); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(p.pid()) {
			break
		}
		if p.exited() {
			t.Fatalf("upsmon exited: %s", p.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("upsmon did not write %s: %s", packagedUpsmonPID, p.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	removeOurPIDFile(p.pid())
	m := &upsmon{p: p, dir: dir}
	return m
}

// removeOurPIDFile removes the packaged PID file when it names pid, or a
// process that no longer runs (pid 0). It never removes a live foreign
// upsmon's file.
func removeOurPIDFile(pid int) {
	b, err := os.ReadFile(packagedUpsmonPID)
	if err != nil {
		return
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if n == pid || (pid == 0 && (n <= 0 || syscall.Kill(n, 0) != nil)) {
		_ = os.Remove(packagedUpsmonPID)
	}
}

// Notified returns the time upsmon ran NOTIFYCMD for typ after `after`.
func (m *upsmon) Notified(typ string, after time.Time) (time.Time, bool) {
	b, _ := os.ReadFile(filepath.Join(m.dir, "notify.log"))
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 || f[1] != typ {
			continue
		}
		at, ok := parseEpoch(f[0])
		if ok && at.After(after) {
			return at, true
		}
	}
	return time.Time{}, false
}

// Shutdowns counts the recorded SHUTDOWNCMD calls (never a real shutdown).
func (m *upsmon) Shutdowns() int {
	b, _ := os.ReadFile(filepath.Join(m.dir, "shutdown.log"))
	return strings.Count(string(b), "SHUTDOWNCMD")
}

func parseEpoch(s string) (time.Time, bool) {
	sec, frac, _ := strings.Cut(s, ".")
	a, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	frac = (frac + "000000000")[:9]
	ns, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(a, ns), true
}

var gcLineRE = regexp.MustCompile(`(\d+)->(\d+)->(\d+) MB, (\d+) MB goal`)

// liveHeap is the heap left after the process's last GC, from
// GODEBUG=gctrace=1 output ("" when no GC ran yet).
func liveHeap(out string) string {
	m := gcLineRE.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return "no GC yet"
	}
	l := m[len(m)-1]
	return fmt.Sprintf("%s MB live after GC (goal %s MB)", l[3], l[4])
}
