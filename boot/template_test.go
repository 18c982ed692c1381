package boot_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/boot"
)

var fillVars = map[string]string{
	"server_ip":   "10.0.0.1",
	"kernel":      "Image",
	"kernel_addr": "0x80000",
}

func TestFill(t *testing.T) {
	tests := []struct {
		name string
		tmpl string
		vars map[string]string
		want string
	}{
		{"empty", "", nil, ""},
		{"no placeholders", "boot", nil, "boot"},
		{"one", "tftpboot {kernel_addr} {kernel}", fillVars, "tftpboot 0x80000 Image"},
		{"adjacent", "{server_ip}:{kernel}", fillVars, "10.0.0.1:Image"},
		{"whole", "{kernel}", fillVars, "Image"},
		{"repeated", "{kernel}{kernel}", fillVars, "ImageImage"},
		{"underscore and digits", "{_a1}", map[string]string{"_a1": "x"}, "x"},
		{"empty value", "a{v}b", map[string]string{"v": ""}, "ab"},
		{"value not expanded again", "{a}", map[string]string{"a": "{b}", "b": "no"}, "{b}"},
		{"escaped braces", "{{kernel}}", fillVars, "{kernel}"},
		{"u-boot variable", "setenv bootargs console=${{console}} ip={server_ip}", fillVars, "setenv bootargs console=${console} ip=10.0.0.1"},
		{"escape then placeholder", "{{{kernel}", fillVars, "{Image"},
		{"placeholder then escape", "{kernel}}}", fillVars, "Image}"},
		{"triple close", "a}}}}b", nil, "a}}b"},
		{"utf-8 text", "é{kernel}ü", fillVars, "éImageü"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := boot.Fill(tc.tmpl, tc.vars)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestFillErrors(t *testing.T) {
	tests := []struct {
		name    string
		tmpl    string
		vars    map[string]string
		wantMsg string
		wantPos int
		unknown string
	}{
		{
			name:    "unknown placeholder",
			tmpl:    "booti {kernel_addr} - {dtb_addr}",
			vars:    fillVars,
			wantMsg: `unknown placeholder {dtb_addr} in "booti {kernel_addr} - {dtb_addr}" (known: kernel, kernel_addr, server_ip)`,
			wantPos: 22,
			unknown: "dtb_addr",
		},
		{
			name:    "unknown with no vars",
			tmpl:    "{x}",
			wantMsg: `unknown placeholder {x} in "{x}" (known: none)`,
			unknown: "x",
		},
		{"unclosed at end", "booti {kernel", fillVars, `unclosed "{" (write "{{" for a literal brace) at position 6 in "booti {kernel"`, 6, ""},
		{"lone open brace", "a{", nil, `unclosed "{" (write "{{" for a literal brace) at position 1 in "a{"`, 1, ""},
		{"unclosed before another", "{a {b}", map[string]string{"b": ""}, `unclosed "{" (write "{{" for a literal brace) at position 0`, 0, ""},
		{"empty name", "x{}", nil, "invalid placeholder {} (names are [a-z_][a-z0-9_]*", 1, ""},
		{"upper case", "{Kernel}", fillVars, "invalid placeholder {Kernel}", 0, ""},
		{"leading digit", "{1a}", nil, "invalid placeholder {1a}", 0, ""},
		{"space", "{ kernel }", fillVars, "invalid placeholder { kernel }", 0, ""},
		{"lone close brace", "a}b", nil, `unmatched "}" (write "}}" for a literal brace) at position 1 in "a}b"`, 1, ""},
		{"odd close braces", "}}}", nil, `unmatched "}"`, 2, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := boot.Fill(tc.tmpl, tc.vars)
			require.Error(t, err)
			assert.Empty(t, got)
			assert.Contains(t, err.Error(), tc.wantMsg)
			var te *boot.TemplateError
			require.ErrorAs(t, err, &te)
			assert.Equal(t, tc.wantPos, te.Pos)
			assert.Equal(t, tc.unknown, te.Name)
			assert.Equal(t, tc.tmpl, te.Template)
		})
	}
}

var placeholderRE = regexp.MustCompile(`\{([a-z_][a-z0-9_]*)\}`)

func FuzzFill(f *testing.F) {
	for _, s := range []string{
		"", "boot", "tftpboot {kernel_addr} {kernel}", "{{kernel}}", "{{{a}}}", "{a}}}", "}}{{",
		"{", "}", "{}", "{a", "{a{b}", "{A}", "{_}", "{a1_b}", "${{x}}", "é{a}\x00", "{{{{",
		"booti {kernel_addr} - {dtb_addr}",
	} {
		f.Add(s, "v")
	}
	const sentinel = "\x00"
	f.Fuzz(func(t *testing.T, tmpl, val string) {
		// Arbitrary values: never panics, and no error besides a TemplateError.
		vars := map[string]string{"a": val, "kernel": val}
		if _, err := boot.Fill(tmpl, vars); err != nil {
			var te *boot.TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("Fill(%q): error %v is not a *TemplateError", tmpl, err)
			}
		}

		// Every name that looks like a placeholder has a value: Fill may
		// only fail on syntax, and must replace every placeholder.
		if strings.Contains(tmpl, sentinel) {
			return
		}
		all := map[string]string{}
		for _, m := range placeholderRE.FindAllStringSubmatch(tmpl, -1) {
			all[m[1]] = sentinel
		}
		out, err := boot.Fill(tmpl, all)
		if err != nil {
			var te *boot.TemplateError
			require.ErrorAs(t, err, &te)
			if te.Name != "" {
				t.Fatalf("Fill(%q): unknown placeholder %q although all are known", tmpl, te.Name)
			}
			return
		}
		// Each "{" of the template is half of a "{{" (one "{" in the output)
		// or opens a placeholder that was replaced (one sentinel in the
		// output); likewise for "}". So no placeholder was left unreplaced.
		n := strings.Count(out, sentinel)
		if got, want := strings.Count(tmpl, "{"), 2*strings.Count(out, "{")+n; got != want {
			t.Fatalf("Fill(%q) = %q: %d '{' in the template, want %d", tmpl, out, got, want)
		}
		if got, want := strings.Count(tmpl, "}"), 2*strings.Count(out, "}")+n; got != want {
			t.Fatalf("Fill(%q) = %q: %d '}' in the template, want %d", tmpl, out, got, want)
		}
		if !strings.Contains(tmpl, "{{") && !strings.Contains(tmpl, "}}") && placeholderRE.MatchString(out) {
			t.Fatalf("Fill(%q) = %q: unreplaced placeholder", tmpl, out)
		}
		// Escaping the output gives a template that fills back to it.
		esc := strings.NewReplacer("{", "{{", "}", "}}").Replace(out)
		back, err := boot.Fill(esc, nil)
		require.NoError(t, err, "Fill(%q)", esc)
		require.Equal(t, out, back)
	})
}
