// Package lab describes a lab: the boards troupe can run jobs on. It reads
// lab files (TOML, strict, with the error style of package jobs), checks
// whether a lab can ever run a job (by the scheduler's feasibility rule).
package lab

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/jobs/tomlfile"
)

// Sim is the backend of simulated boards (the default).
const Sim = "sim"

// backends are the kinds of board backend a lab file may name, each with
// the keys of a board table that belong to it and their parser. Package
// backend maps the same kinds to how a board is opened and powered off.
var backends = []struct {
	kind  string
	keys  []string
	parse func(t tomlfile.Table, b *Board)
}{
	{Sim, nil, nil},
	{HardwareBackend, []string{"console", "power", "boot", "deploy", "ssh"}, func(t tomlfile.Table, b *Board) { b.Hardware = parseHardware(t) }},
	{QemuBackend, []string{"qemu"}, func(t tomlfile.Table, b *Board) { b.Qemu = parseQemu(t) }},
}

// Backends are the backend kinds a board may have.
func Backends() []string {
	var kinds []string
	for _, k := range backends {
		kinds = append(kinds, k.kind)
	}
	return kinds
}

// parseBackend checks b's backend and reads the keys of board table t
// that belong to it; keys of other backends are errors.
func parseBackend(t tomlfile.Table, b *Board) {
	if !slices.Contains(Backends(), b.Backend) {
		t.Errorf("backend", "backend %q is not supported (supported: %s)", b.Backend, strings.Join(Backends(), ", "))
	}
	for _, k := range backends {
		if k.kind == b.Backend {
			if k.parse != nil {
				k.parse(t, b)
			}
			continue
		}
		for _, key := range k.keys {
			if t.Has(key) {
				t.Errorf(key, "is for backend = %q", k.kind)
			}
		}
	}
}

// Board is one device of the lab.
type Board struct {
	Name       string
	DeviceType string
	Tags       []string
	Backend    string
	// Hardware is how to reach a real board (backend "hardware"); nil
	// for simulated boards.
	Hardware *Hardware
	// Qemu is how a QEMU board is emulated (backend "qemu"); nil otherwise.
	Qemu *Qemu
	// Health is the state the lab file puts the board in: "" (the
	// scheduler decides: unknown until checked where a health check
	// exists, good otherwise), or one of Healths.
	Health string
	Line   int // in the lab file; 0 for built-in boards
	// StandIn marks a sim board of the built-in lab standing in for a
	// device type of its own (not "sim"): it takes the images it cannot
	// boot (kernel images, disk images) and boots its own shell. Never
	// set by a lab file.
	StandIn bool
}

// Healths are the board states a lab file may set.
var Healths = []string{"unknown", "good", "bad", "maintenance", "retired"}

// Defaults of lab files.
const (
	// DefaultRetries is how often a job ended by an infrastructure error
	// is rerun on other boards.
	DefaultRetries = 1
	// DefaultBadAfter is how many consecutive infrastructure errors take a
	// board out of service.
	DefaultBadAfter = 3
)

// Lab is a set of boards.
type Lab struct {
	Boards       []Board // in file order
	File         string
	Retries      int           // >= 0: reruns of a job ended by an infrastructure error
	BadAfter     int           // >= 1: consecutive infrastructure errors that take a board out of service
	HealthChecks []HealthCheck // in file order, at most one per device type
	TFTP         TFTP          // the TFTP server of boards with deploy method "tftp"
	LogLimit     int64         // bytes of console kept per node of a job; 0: logbook.DefaultLimit
	// BootLimit and DeployLimit are the lab's own limits on a boot and a
	// deploy: one that does not end within them is the board's fault (an
	// infrastructure error, toward bad_after); a shorter timeout the job
	// sets is the job's. Zero: jobs.DefaultBootTimeout and
	// jobs.DefaultDeployTimeout.
	BootLimit, DeployLimit time.Duration
	// LAVAMirrors map URL prefixes of LAVA jobs' test definition
	// repositories and images to local directories ([lava_mirrors]: the
	// lab's offline mirrors; --lava-mirror adds to them), in URL order.
	LAVAMirrors []LAVAMirror
	// Sandbox is how sim boards' shells are confined: SandboxNamespaces
	// (also when "", the default) or SandboxNone (they run as troupe's
	// user, seeing everything it can).
	Sandbox string
	// SandboxProcesses and SandboxFileSize bound each sandboxed sim
	// board: its processes at once, and the bytes of any one file it
	// writes (sim.Limits). Zero: the defaults.
	SandboxProcesses int
	SandboxFileSize  int64
}

// Bounds of the lab file's sandbox limits.
const (
	MinSandboxProcesses = 16
	MinSandboxFileSize  = 1 << 20
)

// LAVAMirror is one [lava_mirrors] entry: URLs starting with URL are
// read from Dir (absolute: a relative directory in the file is the lab
// file's directory's).
type LAVAMirror struct {
	URL, Dir string
}

// mirrorSchemes are the URL schemes a LAVA mirror can stand in for.
var mirrorSchemes = []string{"http", "https", "git", "file"}

// parseLAVAMirrors reads the [lava_mirrors] table: "URL prefix" = "DIR".
func parseLAVAMirrors(t tomlfile.Table, file string) []LAVAMirror {
	var out []LAVAMirror
	for _, k := range t.Keys() {
		dir, ok := t.String(k)
		if !ok {
			continue
		}
		u, err := url.Parse(k)
		switch {
		case err != nil || !slices.Contains(mirrorSchemes, u.Scheme) || u.Scheme != "file" && u.Host == "":
			t.Errorf(k, "a mirror's key is a URL prefix (http, https, git or file, with a host but for file), got %q", k)
			continue
		case dir == "":
			t.Errorf(k, "must name a directory")
			continue
		}
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(filepath.Dir(file), dir)
		}
		out = append(out, LAVAMirror{URL: k, Dir: filepath.Clean(dir)})
	}
	return out
}

// Sandbox kinds of a lab file's sandbox key.
const (
	SandboxNamespaces = "namespaces"
	SandboxNone       = "none"
)

// TFTP is where the lab serves deployed images to boards that fetch them
// (u-boot's tftpboot).
type TFTP struct {
	Address  string // listen address, host:port ("": 0.0.0.0:69)
	ServerIP string // what boards are told to fetch from ({server_ip}); default: the address's host, or the address itself when its port is not 69
}

// HealthCheck is the job that checks the health of the boards of one device
// type. It runs on a board whose health is unknown, and again after Every
// jobs on it or when the last check is older than Interval (if set).
type HealthCheck struct {
	DeviceType string
	Job        *jobs.Job     // exactly one role, with count 1 and DeviceType
	Every      int           // >= 0; 0: only when the board's health is unknown
	Interval   time.Duration // >= 0; 0: no time-based rerun
	Line       int           // in the lab file
}

// Load reads and parses the lab file at path.
func Load(path string) (*Lab, error) {
	data, err := tomlfile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load lab: %w", err)
	}
	return Parse(path, data)
}

// Parse parses a lab file read from file (which names it in errors). The
// error, if any, is a jobs.Errors.
func Parse(file string, data []byte) (*Lab, error) {
	doc, root, err := tomlfile.Parse(file, data)
	if err != nil {
		return nil, err
	}
	l := &Lab{File: file, Retries: DefaultRetries, BadAfter: DefaultBadAfter}
	root.Only("board", "retries", "bad_after", "health_check", "tftp", "sandbox", "sandbox_processes", "sandbox_file_size",
		"log_limit", "boot_limit", "deploy_limit", "lava_mirrors")
	if t, ok := root.Table("lava_mirrors"); ok {
		l.LAVAMirrors = parseLAVAMirrors(t, file)
	}
	for _, lim := range []struct {
		key string
		to  *time.Duration
	}{{"boot_limit", &l.BootLimit}, {"deploy_limit", &l.DeployLimit}} {
		if d, ok := root.Duration(lim.key); ok {
			if d <= 0 {
				root.Errorf(lim.key, "must be > 0 (got %s)", d)
			}
			*lim.to = d
		}
	}
	if v, ok := root.String("sandbox"); ok {
		if v != SandboxNamespaces && v != SandboxNone {
			root.Errorf("sandbox", "want %q or %q (got %q)", SandboxNamespaces, SandboxNone, v)
		}
		l.Sandbox = v
	}
	if t, ok := root.Table("tftp"); ok {
		t.Only("address", "server_ip")
		if a, ok := t.String("address"); ok {
			if _, _, err := net.SplitHostPort(a); err != nil {
				t.Errorf("address", "want host:port (%v)", err)
			}
			l.TFTP.Address = a
		}
		l.TFTP.ServerIP, _ = t.String("server_ip")
	}
	if n, ok := root.Int("retries"); ok {
		if n < 0 {
			root.Errorf("retries", "must be >= 0 (got %d)", n)
		}
		l.Retries = int(n)
	}
	if n, ok := root.Int("bad_after"); ok {
		if n < 1 {
			root.Errorf("bad_after", "must be >= 1 (got %d)", n)
		}
		l.BadAfter = int(n)
	}
	if n, ok := root.Int("sandbox_processes"); ok {
		if n < MinSandboxProcesses || n > 1<<22 {
			root.Errorf("sandbox_processes", "must be %d to %d (got %d)", MinSandboxProcesses, 1<<22, n)
		}
		l.SandboxProcesses = int(n)
	}
	if n, ok := root.Int("sandbox_file_size"); ok {
		if n < MinSandboxFileSize {
			root.Errorf("sandbox_file_size", "must be >= %d bytes (got %d)", MinSandboxFileSize, n)
		}
		l.SandboxFileSize = n
	}
	if n, ok := root.Int("log_limit"); ok {
		if n < 4096 {
			root.Errorf("log_limit", "must be >= 4096 bytes (got %d)", n)
		}
		l.LogLimit = n
	}
	root.Require("board")
	tables, _ := root.Tables("board")
	if root.Has("board") && len(tables) == 0 {
		root.Errorf("board", "at least one board is required")
	}
	names := map[string]int{} // board name -> line of its table
	for _, t := range tables {
		b := Board{Backend: Sim, Line: t.Line()}
		t.Only("name", "device_type", "tags", "backend", "health", "console", "power", "boot", "deploy", "ssh", "qemu")
		t.Require("name", "device_type")
		if name, ok := t.String("name"); ok {
			b.Name = name
			if !validName(name) {
				t.Errorf("name", "must contain only letters, digits, '_', '.' and '-' (got %q)", name)
			} else if prev, dup := names[name]; dup {
				t.Errorf("name", "duplicate board name %q (also the name of the board at line %d)", name, prev)
			} else {
				names[name] = t.Line()
			}
		}
		if dt, ok := t.String("device_type"); ok {
			if dt == "" {
				t.Errorf("device_type", "must not be empty")
			}
			b.DeviceType = dt
		}
		if tags, ok := t.Strings("tags"); ok && len(tags) > 0 {
			for _, tag := range tags {
				if tag == "" {
					t.Errorf("tags", "tags must not be empty strings")
				}
			}
			b.Tags = tags
		}
		if be, ok := t.String("backend"); ok {
			b.Backend = be
		}
		parseBackend(t, &b)
		if b.Hardware != nil && b.Hardware.SSH != nil {
			b.Hardware.SSH.Key = resolve(l.File, b.Hardware.SSH.Key)
			b.Hardware.SSH.HostKey = resolve(l.File, b.Hardware.SSH.HostKey)
		}
		if h, ok := t.String("health"); ok {
			if !slices.Contains(Healths, h) {
				t.Errorf("health", "must be one of %s (got %q)", strings.Join(Healths, ", "), h)
			}
			b.Health = h
		}
		l.Boards = append(l.Boards, b)
	}
	if checks, ok := root.Tables("health_check"); ok {
		l.HealthChecks = parseHealthChecks(checks, l)
	}
	if err := doc.Err(); err != nil {
		return nil, nameBoards(err, boardNames(tables))
	}
	return l, nil
}

func parseHealthChecks(tables []tomlfile.Table, l *Lab) []HealthCheck {
	types := map[string]bool{} // device types of the boards
	for _, b := range l.Boards {
		types[b.DeviceType] = true
	}
	seen := map[string]string{} // device type -> key of its health check
	var out []HealthCheck
	for _, t := range tables {
		hc := HealthCheck{Line: t.Line()}
		t.Only("device_type", "job", "every", "interval")
		t.Require("device_type", "job")
		if dt, ok := t.String("device_type"); ok {
			hc.DeviceType = dt
			prev, dup := seen[dt]
			switch {
			case dt == "":
				t.Errorf("device_type", "must not be empty")
			case dup:
				t.Errorf("device_type", "duplicate health check for device type %q (also used by %s)", dt, prev)
			case !types[dt]:
				t.Errorf("device_type", "no board has device type %q", dt)
			}
			if dt != "" && !dup {
				seen[dt] = t.Path
			}
		}
		if path, ok := t.String("job"); ok {
			hc.Job = healthJob(t, resolve(l.File, path), hc.DeviceType)
		}
		if n, ok := t.Int("every"); ok {
			if n < 0 {
				t.Errorf("every", "must be >= 0 (got %d)", n)
			}
			hc.Every = int(n)
		}
		if d, ok := t.Duration("interval"); ok {
			if d <= 0 {
				t.Errorf("interval", "must be > 0 (got %q)", t.M["interval"])
			}
			hc.Interval = d
		}
		out = append(out, hc)
	}
	return out
}

// healthJob loads the health check job at path and checks that it has
// exactly one role, with count 1 and (if dt is not empty) device type dt.
// Problems are recorded as errors about the key "job" of t.
func healthJob(t tomlfile.Table, path, dt string) *jobs.Job {
	if path == "" {
		t.Errorf("job", "must not be empty")
		return nil
	}
	// Only regular files: reading a device or a FIFO might never end.
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		t.Errorf("job", "health check job %s is not a regular file", path)
		return nil
	}
	j, err := jobs.Load(path)
	if err == nil {
		err = j.ConfineImages(filepath.Dir(path))
	}
	if err != nil {
		t.Errorf("job", "invalid health check job: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
		return nil
	}
	if len(j.Roles) != 1 {
		names := make([]string, len(j.Roles))
		for i, r := range j.Roles {
			names[i] = r.Name
		}
		t.Errorf("job", "health check job %s must have exactly one role (it has %d: %s)", path, len(j.Roles), strings.Join(names, ", "))
		return j
	}
	r := j.Roles[0]
	if r.Count != 1 {
		t.Errorf("job", "role %s of health check job %s must have count = 1 (got %d)", r.Name, path, r.Count)
	}
	if dt != "" && r.DeviceType != dt {
		t.Errorf("job", "role %s of health check job %s has device_type %q; the health check is for %q", r.Name, path, r.DeviceType, dt)
	}
	return j
}

// resolve makes a path relative to the lab file's directory.
func resolve(file, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(filepath.Dir(file), path)
}

// HealthCheck returns the health check of the boards of deviceType.
func (l *Lab) HealthCheck(deviceType string) (HealthCheck, bool) {
	for _, hc := range l.HealthChecks {
		if hc.DeviceType == deviceType {
			return hc, true
		}
	}
	return HealthCheck{}, false
}

func validName(s string) bool {
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_.-", c)
		if !ok {
			return false
		}
	}
	return s != ""
}

// ForJob is the built-in sim lab for j: one board per node, sim-0, sim-1,
// ... in j.Nodes() order, with the device type and tags of the node's role;
// none for the nodes of guest roles (jobs.Role.Host), which log in to
// their host's board.
func ForJob(j *jobs.Job) *Lab {
	l := &Lab{File: "built-in", Retries: DefaultRetries, BadAfter: DefaultBadAfter}
	for _, n := range j.Nodes() {
		r, _ := j.Role(n.Role)
		if r.Guest() {
			continue
		}
		l.Boards = append(l.Boards, Board{
			Name:       fmt.Sprintf("sim-%d", len(l.Boards)),
			DeviceType: r.DeviceType,
			Tags:       append([]string(nil), r.Tags...),
			Backend:    Sim,
			StandIn:    r.DeviceType != "sim",
		})
	}
	return l
}
