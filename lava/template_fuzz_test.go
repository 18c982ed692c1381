package lava

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/troupe-lab/troupe/boot"
)

// FuzzLAVATemplate: a LAVA boot command always makes a well-formed troupe
// template whose only placeholders are LAVA's, lower-cased; filled, it is
// the command with each {NAME} replaced and every other brace kept.
func FuzzLAVATemplate(f *testing.F) {
	for _, s := range []string{"setenv serverip {SERVER_IP}", "bootz ${kernel_addr_r} - {DTB_ADDR}", "{{", "}{", "{A", "{Ab}", "echo {}"} {
		f.Add(s)
	}
	upper := regexp.MustCompile(`\{[A-Z][A-Z0-9_]*\}`)
	f.Fuzz(func(t *testing.T, s string) {
		tmpl := lavaTemplate(s)
		vars := map[string]string{}
		for _, m := range upper.FindAllString(s, -1) {
			name := strings.ToLower(m[1 : len(m)-1])
			vars[name] = "<" + name + ">"
		}
		got, err := boot.Fill(tmpl, vars)
		if err != nil {
			var te *boot.TemplateError
			if errors.As(err, &te) && te.Reason != "" {
				t.Fatalf("%q → %q: %v", s, tmpl, err)
			}
			t.Fatalf("%q → %q: unfilled: %v", s, tmpl, err)
		}
		want := upper.ReplaceAllStringFunc(s, func(m string) string { return "<" + strings.ToLower(m[1:len(m)-1]) + ">" })
		if got != want {
			t.Fatalf("%q → %q → %q, want %q", s, tmpl, got, want)
		}
	})
}
