package jobs

import (
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Encode writes j as a job file. Defaults are left out, and image paths are
// written relative to the directory of j.File, so parsing the output as
// j.File gives j back.
func (j *Job) Encode(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "name = %s\n", quote(j.Name))
	if j.Timeout != DefaultTimeout {
		fmt.Fprintf(&b, "timeout = %s\n", quote(duration(j.Timeout)))
	}
	if j.Priority != DefaultPriority {
		fmt.Fprintf(&b, "priority = %d\n", j.Priority)
	}
	if j.MultinodeTimeout != DefaultMultinodeTimeout {
		fmt.Fprintf(&b, "\n[multinode]\ntimeout = %s\n", quote(duration(j.MultinodeTimeout)))
	}
	for _, r := range j.Roles {
		fmt.Fprintf(&b, "\n[roles.%s]\n", key(r.Name))
		if r.Guest() {
			fmt.Fprintf(&b, "host = %s\n", quote(r.Host))
		} else {
			fmt.Fprintf(&b, "device_type = %s\n", quote(r.DeviceType))
		}
		fmt.Fprintf(&b, "count = %d\n", r.Count)
		if r.Essential {
			b.WriteString("essential = true\n")
		}
		if len(r.Tags) > 0 {
			fmt.Fprintf(&b, "tags = %s\n", list(r.Tags))
		}
		if r.Timeout != j.MultinodeTimeout {
			fmt.Fprintf(&b, "timeout = %s\n", quote(duration(r.Timeout)))
		}
		writeTable(&b, "roles."+key(r.Name)+".context", r.Context)
	}
	writeTable(&b, "context", j.Context)
	for _, a := range j.Actions {
		fmt.Fprintf(&b, "\n[[action]]\ntype = %s\n", quote(string(a.Type)))
		fmt.Fprintf(&b, "roles = %s\n", list(a.Roles))
		if len(a.Before) > 0 {
			before := make([]string, len(a.Before))
			for i, r := range a.Before {
				before[i] = r.String()
			}
			fmt.Fprintf(&b, "before = %s\n", list(before))
		}
		if a.Name != "" {
			fmt.Fprintf(&b, "name = %s\n", quote(a.Name))
		}
		if a.Image != "" {
			fmt.Fprintf(&b, "image = %s\n", quote(unresolve(j.File, a.Image)))
		}
		if im := a.Images; im != nil {
			var parts []string
			for _, f := range []struct{ k, v string }{{"kernel", im.Kernel}, {"initrd", im.Initrd}, {"rootfs", im.Rootfs}, {"dtb", im.DTB}} {
				if f.v != "" {
					parts = append(parts, fmt.Sprintf("%s = %s", f.k, quote(unresolve(j.File, f.v))))
				}
			}
			if len(im.Files) > 0 {
				var files []string
				for _, k := range slices.Sorted(maps.Keys(im.Files)) {
					files = append(files, fmt.Sprintf("%s = %s", k, quote(unresolve(j.File, im.Files[k]))))
				}
				parts = append(parts, "files = {"+strings.Join(files, ", ")+"}")
			}
			fmt.Fprintf(&b, "images = {%s}\n", strings.Join(parts, ", "))
		}
		if a.Timeout != defaultActionTimeout(a.Type) {
			fmt.Fprintf(&b, "timeout = %s\n", quote(duration(a.Timeout)))
		}
		if a.Run != "" {
			fmt.Fprintf(&b, "run = %s\n", text(a.Run))
		}
		if l := a.Login; l.Prompt != "" || l.User != "" || l.PasswordPrompt != "" || l.Password != "" || l.ShellPrompt != "" || len(l.Commands) > 0 {
			var parts []string
			for _, f := range []struct{ k, v string }{{"prompt", l.Prompt}, {"user", l.User}, {"password_prompt", l.PasswordPrompt}, {"password", l.Password}, {"shell_prompt", l.ShellPrompt}} {
				if f.v != "" {
					parts = append(parts, f.k+" = "+quote(f.v))
				}
			}
			if len(l.Commands) > 0 {
				parts = append(parts, "commands = "+list(l.Commands))
			}
			fmt.Fprintf(&b, "login = {%s}\n", strings.Join(parts, ", "))
		}
		if a.Retries > 0 {
			fmt.Fprintf(&b, "retries = %d\n", a.Retries)
		}
		if ad := a.Address; ad != nil {
			fmt.Fprintf(&b, "address = {message = %s, key = %s}\n", quote(ad.Message), quote(ad.Key))
		}
		if a.Commands != "" {
			fmt.Fprintf(&b, "commands = %s\n", quote(a.Commands))
		}
		if len(a.BootCommands) > 0 {
			fmt.Fprintf(&b, "commands = %s\n", list(a.BootCommands))
		}
		if a.Parse != "" {
			fmt.Fprintf(&b, "parse = %s\n", quote(a.Parse))
		}
		if len(a.Fixup) > 0 {
			words := make([]string, 0, len(a.Fixup))
			for w := range a.Fixup {
				words = append(words, w)
			}
			sort.Strings(words)
			b.WriteString("fixup = {")
			for i, w := range words {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "%s = %s", quote(w), quote(a.Fixup[w]))
			}
			b.WriteString("}\n")
		}
	}
	writeTable(&b, "secrets", j.Secrets)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("encode job %s: %w", j.Name, err)
	}
	return nil
}

// writeTable writes the table name of string values m, if it has any.
func writeTable(b *strings.Builder, name string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(b, "\n[%s]\n", name)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(b, "%s = %s\n", k, quote(m[k]))
	}
}

func defaultActionTimeout(t ActionType) time.Duration {
	switch t {
	case Deploy:
		return DefaultDeployTimeout
	case Boot:
		return DefaultBootTimeout
	default:
		return 0
	}
}

// unresolve undoes resolve.
func unresolve(file, image string) string {
	rel, err := filepath.Rel(filepath.Dir(file), image)
	if err != nil {
		return image
	}
	return filepath.ToSlash(rel)
}

// duration writes d briefly: "10m" rather than "10m0s".
func duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func list(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// key writes k as a bare key if it can be one.
func key(k string) string {
	if k != "" && validName(k, "-") {
		return k
	}
	return quote(k)
}

// text writes a multi-line s as a multi-line literal string when one can hold it.
func text(s string) string {
	if !strings.Contains(s, "\n") || strings.Contains(s, "'''") || !utf8.ValidString(s) {
		return quote(s)
	}
	for _, c := range s {
		if c < 0x20 && c != '\t' && c != '\n' || c == 0x7f {
			return quote(s)
		}
	}
	return "'''\n" + s + "'''"
}

// quote writes s as a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case c == '"' || c == '\\':
			b.WriteString(`\` + string(c))
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, c)
		default:
			b.WriteRune(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
