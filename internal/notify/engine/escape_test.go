package engine

import (
	"strings"
	"testing"
)

// TestEscapeKeepsText: escaping keeps ordinary device text readable and
// leaves the bridge's numbers alone.
func TestEscapeKeepsText(t *testing.T) {
	for _, m := range []Markup{MarkupPlain, MarkupChatMarkdown, MarkupSlack, MarkupDiscord, MarkupHTML, MarkupFeishuText} {
		for _, s := range []string{"OB DISCHRG", "90%", "20 min", "2026-01-02 15:04:05", "Back-UPS 650", "1m30s"} {
			got := m.Escape(s)
			if m == MarkupDiscord {
				got = strings.ReplaceAll(got, `\`, "")
			}
			if got != s {
				t.Errorf("markup %d: escape(%q) = %q", m, s, got)
			}
		}
	}
	if got := MarkupHTML.Escape(`<a href="x">`); got != "&lt;a href=&#34;x&#34;&gt;" {
		t.Errorf("html: %q", got)
	}
}
