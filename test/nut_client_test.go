package test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/internal/nut/client"
)

const baseDev = `ups.mfr: Example
ups.model: Sim 1500
ups.status: OL
battery.charge: 100
battery.runtime: 3000
ups.load: 20
`

func devWith(status string) string {
	return strings.Replace(baseDev, "ups.status: OL", "ups.status: "+status, 1)
}

func nutCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// The client against Debian's real upsd 2.8 and dummy-ups: every command.
func TestNUTClientRealUPSD(t *testing.T) {
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{
		{Name: "dummy", Dev: baseDev + "ups.id: a\\\\b\n", Desc: "Simulated UPS"},
	}})
	ctx := nutCtx(t, 30*time.Second)
	c, err := client.Dial(ctx, u.Addr(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	ver, err := c.Ver(ctx)
	if err != nil || !strings.HasPrefix(ver, "Network UPS Tools upsd") {
		t.Fatalf("VER = %q, %v", ver, err)
	}
	if nv, err := c.NetVer(ctx); err != nil || nv != "1.3" {
		t.Fatalf("NETVER = %q, %v", nv, err)
	}
	list, err := c.ListUPS(ctx)
	if err != nil || len(list) != 1 || list[0] != (client.UPS{Name: "dummy", Description: "Simulated UPS"}) {
		t.Fatalf("LIST UPS = %v, %v", list, err)
	}
	if d, err := c.UPSDesc(ctx, "dummy"); err != nil || d != "Simulated UPS" {
		t.Fatalf("UPSDESC = %q, %v", d, err)
	}
	vars, err := c.ListVar(ctx, "DUMMY") // names are case-insensitive; upsd echoes our spelling
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, v := range vars {
		got[v.Name] = v.Value
	}
	if got["ups.status"] != "OL" || got["ups.model"] != "Sim 1500" || got["battery.charge"] != "100" {
		t.Fatalf("LIST VAR = %v", got)
	}
	if v, err := c.GetVar(ctx, "dummy", "ups.load"); err != nil || v != "20" {
		t.Fatalf("GET VAR = %q, %v", v, err)
	}
	if _, err := c.GetVar(ctx, "dummy", "no.such.var"); !errors.Is(err, client.ErrVarNotSupported) {
		t.Fatalf("GET VAR unknown: %v", err)
	}
	if _, err := c.ListVar(ctx, "nosuch"); !errors.Is(err, client.ErrUnknownUPS) {
		t.Fatalf("LIST VAR unknown UPS: %v", err)
	}
	typ, err := c.GetType(ctx, "dummy", "ups.model")
	if err != nil || !typ.RW {
		t.Fatalf("GET TYPE = %+v, %v", typ, err)
	}
	if _, err := c.Desc(ctx, "dummy", "ups.model"); err != nil {
		t.Fatalf("GET DESC: %v", err)
	}
	cmds, err := c.ListCmd(ctx, "dummy")
	if err != nil || !slices.Contains(cmds, "load.off") {
		t.Fatalf("LIST CMD = %v, %v", cmds, err)
	}
	if _, err := c.CmdDesc(ctx, "dummy", "load.off"); err != nil {
		t.Fatalf("GET CMDDESC: %v", err)
	}
	rw, err := c.ListRW(ctx, "dummy")
	if err != nil || len(rw) == 0 {
		t.Fatalf("LIST RW = %v, %v", rw, err)
	}
	if e, err := c.ListEnum(ctx, "dummy", "ups.model"); err != nil || len(e) != 0 {
		t.Fatalf("LIST ENUM = %v, %v", e, err)
	}
	if r, err := c.ListRange(ctx, "dummy", "ups.model"); err != nil || len(r) != 0 {
		t.Fatalf("LIST RANGE = %v, %v", r, err)
	}
	// Write commands need an account.
	if _, err := c.InstCmd(ctx, "dummy", "load.off", ""); !errors.Is(err, client.ErrUsernameRequired) {
		t.Fatalf("INSTCMD without login: %v", err)
	}
	if err := c.Authenticate(ctx, harness.NUTAdminUser, harness.NUTAdminPassword); err != nil {
		t.Fatal(err)
	}
	if err := c.Login(ctx, "dummy"); err != nil {
		t.Fatal(err)
	}
	if err := c.Login(ctx, "dummy"); !errors.Is(err, client.ErrAlreadyLoggedIn) {
		t.Fatalf("second LOGIN: %v", err)
	}
	if n, err := c.NumLogins(ctx, "dummy"); err != nil || n != 1 {
		t.Fatalf("NUMLOGINS = %d, %v", n, err)
	}
	if cl, err := c.ListClient(ctx, "dummy"); err != nil || len(cl) != 1 || cl[0] != "127.0.0.1" {
		t.Fatalf("LIST CLIENT = %v, %v", cl, err)
	}
	if err := c.Primary(ctx, "dummy"); err != nil {
		t.Fatalf("PRIMARY: %v", err)
	}
	if err := c.SetTracking(ctx, true); err != nil {
		t.Fatal(err)
	}
	if on, err := c.Tracking(ctx); err != nil || !on {
		t.Fatalf("GET TRACKING = %v, %v", on, err)
	}
	// A value that needs every escape survives the round trip (the driver
	// stores what upsd hands it).
	id, err := c.SetVar(ctx, "dummy", "ups.model", `Sim "1500" #2`)
	if err != nil || id == "" {
		t.Fatalf("SET VAR = %q, %v", id, err)
	}
	if res, err := c.WaitTracking(ctx, id, 50*time.Millisecond); err != nil || res != client.TrackingSuccess {
		t.Fatalf("SET tracking = %q, %v", res, err)
	}
	if _, err := c.SetVar(ctx, "dummy", "no.such.var", "1"); !errors.Is(err, client.ErrVarNotSupported) {
		t.Fatalf("SET unknown var: %v", err)
	}
	id, err = c.InstCmd(ctx, "dummy", "load.off", "")
	if err != nil || id == "" {
		t.Fatalf("INSTCMD = %q, %v", id, err)
	}
	// dummy-ups does not implement load.off: the driver's answer is UNKNOWN.
	if res, err := c.WaitTracking(ctx, id, 50*time.Millisecond); !errors.Is(err, client.ErrUnknown) {
		t.Fatalf("INSTCMD tracking = %q, %v; want ERR UNKNOWN", res, err)
	}
	if _, err := c.InstCmd(ctx, "dummy", "no.such.cmd", ""); !errors.Is(err, client.ErrCmdNotSupported) {
		t.Fatalf("INSTCMD unknown: %v", err)
	}
	if err := c.FSD(ctx, "dummy"); err != nil {
		t.Fatal(err)
	}
	if st, err := c.GetVar(ctx, "dummy", "ups.status"); err != nil || st != "FSD OL" {
		t.Fatalf("status after FSD = %q, %v", st, err)
	}
	// Debian's upsd has no certificate: STARTTLS is not configured.
	if err := c.StartTLS(ctx, nil); !errors.Is(err, client.ErrFeatureNotConfigured) {
		t.Fatalf("STARTTLS: %v", err)
	}
	if err := c.Logout(ctx); err != nil {
		t.Fatal(err)
	}

	// Bad password: USERNAME/PASSWORD say OK, LOGIN is denied.
	c2, err := client.Dial(ctx, u.Addr(), client.Options{StartTLS: client.TLSTry})
	if err != nil {
		t.Fatalf("starttls try must fall back to plain: %v", err)
	}
	defer c2.Close()
	if err := c2.Authenticate(ctx, harness.NUTMonUser, "wrong"); err != nil {
		t.Fatal(err)
	}
	if err := c2.Login(ctx, "dummy"); !errors.Is(err, client.ErrAccessDenied) {
		t.Fatalf("LOGIN with a bad password: %v", err)
	}
	if _, err := client.Dial(ctx, u.Addr(), client.Options{StartTLS: client.TLSRequire}); !errors.Is(err, client.ErrFeatureNotConfigured) {
		t.Fatalf("starttls require: %v", err)
	}

	// Stale and disconnected drivers are typed errors.
	c3, err := client.Dial(ctx, u.Addr(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	u.StopDriver("dummy")
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c3.ListVar(ctx, "dummy")
		if errors.Is(err, client.ErrDriverNotConnected) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after stopping the driver: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
