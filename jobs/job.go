// Package jobs reads troupe job files: TOML descriptions of a multi-node
// job, its roles (how many nodes of which device type), and the deploy, boot
// and test actions to run on them.
//
// Parsing is strict: unknown keys, wrong types and invalid values are all
// reported together, each as an *Error naming the file, line and key.
package jobs

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/troupe-lab/troupe/jobs/tomlfile"
)

// ActionType is the kind of an action.
type ActionType string

// The action types.
const (
	Deploy ActionType = "deploy"
	Boot   ActionType = "boot"
	Test   ActionType = "test"
)

// Defaults and limits of job files.
const (
	DefaultTimeout          = 30 * time.Minute
	DefaultPriority         = 50
	DefaultMultinodeTimeout = 5 * time.Minute
	DefaultDeployTimeout    = 10 * time.Minute
	DefaultBootTimeout      = 5 * time.Minute
	MaxNodes                = 10000
	MaxNameLen              = 100 // of a job name
	// MaxGuests bounds the guests of one host (jobs.Role.Host): each is a
	// login, a shell of its own, on the host's one board.
	MaxGuests = 32
)

// Job is a parsed, valid job file.
type Job struct {
	Name             string
	Timeout          time.Duration // whole job
	Priority         int           // 0..100
	MultinodeTimeout time.Duration // default for every multinode call
	Roles            []Role        // sorted by name
	Actions          []Action      // in file order
	File             string        // path it was loaded from
	// Secrets are exported to every test's environment (LAVA's job
	// secrets) and kept out of the logs: their values are masked there.
	Secrets map[string]string
	// Context (LAVA's job context) gives values to the placeholders
	// {name} of the boards' boot command templates that their lab entries
	// leave open; a role's Context adds to it.
	Context map[string]string
}

// Role is a group of identical nodes.
type Role struct {
	Name       string
	DeviceType string
	Count      int
	Essential  bool
	Tags       []string
	Timeout    time.Duration     // effective per-call multinode timeout
	Context    map[string]string // added to the job's Context for this role's boards
	// Host makes the role a guest of the role of that name (LAVA's ssh
	// guests: connection ssh, host_role, request lava-start): its nodes
	// take no board of the lab; each waits until every node of the host
	// role has sent the message StartMessage, then its boot opens a
	// session (a login) on the host's board and its tests run there. The
	// host role has one node and is not a guest itself.
	Host string
}

// StartMessage is the message a host role's node sends to let its guests
// start (LAVA's lava_start).
const StartMessage = "lava_start"

// Guest reports whether r is a guest of another role (see Role.Host).
func (r Role) Guest() bool { return r.Host != "" }

// Action is one step of the job, run on the nodes of some roles.
type Action struct {
	Index   int // 0-based position in the file
	Type    ActionType
	Roles   []string      // all role names if the file omits them
	Image   string        // deploy only; resolved against the job file's directory (see ConfineImages)
	Images  *Images       // deploy only: boot images of a board that boots a kernel (qemu); nil: none
	Timeout time.Duration // 0 for a test without timeout: bounded by the job timeout
	Name    string        // test only
	Run     string        // test only
	// Parse (test only, optional) is a regular expression with the named
	// groups test_case_id and result (measurement, units optional): every
	// output line of the test it matches is a test case. Fixup maps result
	// words to pass, fail, skip or unknown.
	Parse string
	Fixup map[string]string
	// Login (boot only, optional) replaces the board's login settings
	// where it sets them (LAVA's auto_login).
	Login Login
	// Retries is how often the action is run again when it fails on the
	// board (LAVA's failure_retry, less the first run); its before calls
	// are made once.
	Retries int
	// Commands (boot only, optional) names the boot command set of the
	// board's lab entry to boot with (LAVA's boot commands: nfs, ramdisk,
	// ...); "": the board's own commands.
	Commands string
	// BootCommands (boot only, optional) are the job's own u-boot
	// commands (LAVA's boot commands given as a list), typed at the
	// bootloader prompt instead of the board's; placeholders as in the
	// lab's. Not with Commands.
	BootCommands []string
	// Before are MultiNode calls the node makes, in order, before the
	// action starts (LAVA's action-level protocols: lava-multinode).
	Before []Request
	// Address (boot of a guest role only, optional) names the message of
	// the host's node that carries its address (LAVA's boot method ssh,
	// parameters hostID and host_key): the boot waits for it and opens
	// the session to that address. nil: the host board's own address.
	Address *Address
	Line    int
}

// Address is where a guest's boot takes its host's address from: the
// value of Key in the message ID.
type Address struct {
	Message, Key string
}

// Request is a MultiNode call made outside a test script. Its text form,
// in a job file's before list, is the helper's: "send ID [KEY=VALUE...]",
// "wait ID", "wait-all ID [ROLE]" or "sync ID".
type Request struct {
	Kind string   // send, wait, wait-all or sync
	ID   string   // message or barrier id
	Args []string // send: KEY=VALUE pairs; wait-all: the role, if any
}

// String is the text form of r.
func (r Request) String() string {
	return strings.Join(append([]string{r.Kind, r.ID}, r.Args...), " ")
}

var requestWord = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// ParseRequest reads the text form of a Request.
func ParseRequest(s string) (Request, error) {
	f := strings.Fields(s)
	if len(f) < 2 {
		return Request{}, fmt.Errorf("%q: want KIND ID [ARGS...] (send, wait, wait-all, sync)", s)
	}
	r := Request{Kind: f[0], ID: f[1], Args: f[2:]}
	if !requestWord.MatchString(r.ID) {
		return Request{}, fmt.Errorf("%q: invalid message id %q (letters, digits, '.', '_', '-')", s, r.ID)
	}
	switch r.Kind {
	case "send":
		for _, a := range r.Args {
			k, _, ok := strings.Cut(a, "=")
			if !ok || !requestWord.MatchString(k) || strings.ContainsAny(a, "<>") {
				return Request{}, fmt.Errorf("%q: %q is not KEY=VALUE", s, a)
			}
		}
	case "wait", "sync":
		if len(r.Args) > 0 {
			return Request{}, fmt.Errorf("%q: %s takes only an id", s, r.Kind)
		}
	case "wait-all":
		if len(r.Args) > 1 {
			return Request{}, fmt.Errorf("%q: wait-all takes an id and at most a role", s)
		}
	default:
		return Request{}, fmt.Errorf("%q: unknown call %q (send, wait, wait-all, sync)", s, r.Kind)
	}
	if len(r.Args) == 0 {
		r.Args = nil
	}
	return r, nil
}

// Images are what a board that boots a Linux kernel itself (a QEMU board)
// is deployed with; paths are resolved against the job file's directory.
type Images struct {
	Kernel string // required, unless Rootfs or Files are given
	Initrd string // optional
	Rootfs string // optional: a raw disk image, attached as the first disk
	DTB    string // optional: the device tree blob
	// Files are further images by name (lower-case letters, digits, '_'),
	// which boards that fetch their images over TFTP stage and their lab
	// entry's commands name as {name}: LAVA's nfsrootfs, dtbo and modules,
	// and the images of flashing boot methods. QEMU boards refuse them.
	Files map[string]string
}

// Login is a boot action's login: regular expressions of the login and
// password prompts, the user and the password; "" keeps the board's.
type Login struct {
	Prompt, User, PasswordPrompt, Password string
	// ShellPrompt is a shell prompt after the login beside the board's
	// own, a regular expression found on the output's last line (LAVA's
	// boot prompts). A simulated board has only its own.
	ShellPrompt string
	// Commands are typed at the shell prompt after the login (LAVA's
	// login_commands).
	Commands []string
}

// Bounds of a boot action's own commands (Action.BootCommands,
// Login.Commands): how many, and how long each (one line).
const (
	MaxBootCommands   = 64
	MaxBootCommandLen = 1024
)

// checkCommands records an error for commands beyond the bounds or
// spanning several lines.
func checkCommands(t tomlfile.Table, k string, cmds []string) bool {
	if len(cmds) > MaxBootCommands {
		t.Errorf(k, "at most %d commands (got %d)", MaxBootCommands, len(cmds))
		return false
	}
	for i, c := range cmds {
		switch {
		case len(c) > MaxBootCommandLen:
			t.Errorf(k, "command %d: at most %d bytes (got %d)", i+1, MaxBootCommandLen, len(c))
			return false
		case strings.ContainsAny(c, "\r\n"):
			t.Errorf(k, "command %d: one line each", i+1)
			return false
		}
	}
	return true
}

// MaxRetries bounds an action's retries.
const MaxRetries = 10

// secretName is the form of the names of Job.Secrets.
var secretName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// commandSetName is the form of a boot action's commands.
var commandSetName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// imageFileName is the form of the names of Images.Files.
var imageFileName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// fixedImages are the names of the Images fields, which Files cannot use.
var fixedImages = []string{"kernel", "initrd", "rootfs", "dtb", "ramdisk", "image", "server_ip", "board", "files"}

// Node is one member of a role.
type Node struct {
	Name  string // "<role>-<index>"
	Role  string
	Index int
}

// Error is a problem in a job (or lab) file.
type Error = tomlfile.Error

// Errors is every problem found in a file; Load and Parse return it.
type Errors = tomlfile.Errors

// Load reads and parses the job file at path.
func Load(path string) (*Job, error) {
	data, err := tomlfile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load job: %w", err)
	}
	return Parse(path, data)
}

// Parse parses a job file read from file. file names the file in errors,
// and relative image paths are resolved against its directory.
func Parse(file string, data []byte) (*Job, error) {
	doc, root, err := tomlfile.Parse(file, data)
	if err != nil {
		return nil, err
	}
	j := &Job{File: file, Timeout: DefaultTimeout, Priority: DefaultPriority, MultinodeTimeout: DefaultMultinodeTimeout}
	root.Only("name", "timeout", "priority", "multinode", "roles", "action", "secrets", "context")
	if ct, ok := root.Table("context"); ok {
		j.Context = parseContext(ct)
	}
	root.Require("name", "roles", "action")
	if name, ok := root.String("name"); ok {
		j.Name = name
		if checkName(root, "name", name, ".-") {
			checkJobName(root, name)
		}
	}
	if d, ok := positive(root, "timeout"); ok {
		j.Timeout = d
	}
	if p, ok := root.Int("priority"); ok {
		if p < 0 || p > 100 {
			root.Errorf("priority", "must be between 0 and 100 (got %d)", p)
		}
		j.Priority = int(p)
	}
	if mn, ok := root.Table("multinode"); ok {
		mn.Only("timeout")
		if d, ok := positive(mn, "timeout"); ok {
			j.MultinodeTimeout = d
		}
	}
	if roles, ok := root.Table("roles"); ok {
		j.Roles = parseRoles(roles, j.MultinodeTimeout)
	}
	if st, ok := root.Table("secrets"); ok {
		for _, k := range st.Keys() {
			if !secretName.MatchString(k) {
				st.Errorf(k, "a secret's name is a shell variable name")
				continue
			}
			// Not st.String: its type errors quote the value.
			if v, ok := st.M[k].(string); !ok {
				st.Errorf(k, "must be a string")
			} else {
				if v == "" {
					st.Errorf(k, "must not be empty") // an empty value would mask nothing
					continue
				}
				if j.Secrets == nil {
					j.Secrets = map[string]string{}
				}
				j.Secrets[k] = v
			}
		}
	}
	if actions, ok := root.Tables("action"); ok {
		if len(actions) == 0 {
			root.Errorf("action", "at least one action is required")
		}
		j.Actions = parseActions(actions, j)
	}
	if err := doc.Err(); err != nil {
		return nil, err
	}
	return j, nil
}

// parseLogin reads a boot action's login table.
func parseLogin(t tomlfile.Table) Login {
	t.Only("prompt", "user", "password_prompt", "password", "shell_prompt", "commands")
	var l Login
	if cmds, ok := t.Strings("commands"); ok && checkCommands(t, "commands", cmds) {
		l.Commands = cmds
	}
	for _, f := range []struct {
		k      string
		dst    *string
		regexp bool
	}{{"prompt", &l.Prompt, true}, {"user", &l.User, false}, {"password_prompt", &l.PasswordPrompt, true}, {"password", &l.Password, false}, {"shell_prompt", &l.ShellPrompt, true}} {
		if s, ok := t.String(f.k); ok {
			if _, err := regexp.Compile(s); f.regexp && err != nil {
				t.Errorf(f.k, "not a regular expression: %v", err)
			}
			*f.dst = s
		}
	}
	return l
}

// parseAddress reads a guest boot's address = {message, key}.
func parseAddress(t tomlfile.Table) *Address {
	t.Only("message", "key")
	t.Require("message", "key")
	ad := &Address{}
	for _, f := range []struct {
		k   string
		dst *string
	}{{"message", &ad.Message}, {"key", &ad.Key}} {
		if s, ok := t.String(f.k); ok {
			if !requestWord.MatchString(s) {
				t.Errorf(f.k, "letters, digits, '.', '_' and '-' (got %q)", s)
			}
			*f.dst = s
		}
	}
	return ad
}

// parseContext reads a context table: names as placeholders are named,
// string values.
func parseContext(t tomlfile.Table) map[string]string {
	out := map[string]string{}
	for _, k := range t.Keys() {
		if !secretName.MatchString(k) {
			t.Errorf(k, "a context name is letters, digits and '_', not starting with a digit")
			continue
		}
		if v, ok := t.String(k); ok {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func parseRoles(t tomlfile.Table, multinode time.Duration) []Role {
	if len(t.M) == 0 {
		t.Errorf("", "at least one role is required")
	}
	var roles []Role
	total := 0
	for _, name := range t.Keys() { // sorted
		checkName(t, name, name, "")
		rt, ok := t.Table(name)
		if !ok {
			continue
		}
		r := Role{Name: name, Count: 1, Timeout: multinode}
		rt.Only("device_type", "count", "essential", "tags", "timeout", "context", "host")
		if ct, ok := rt.Table("context"); ok {
			r.Context = parseContext(ct)
		}
		if h, ok := rt.String("host"); ok {
			r.Host = h
			for _, k := range []string{"device_type", "tags", "context"} {
				if rt.Has(k) {
					rt.Errorf(k, "a guest role (host) takes no board of its own: it has no %s", k)
				}
			}
		} else {
			rt.Require("device_type")
		}
		if s, ok := rt.String("device_type"); ok {
			if s == "" {
				rt.Errorf("device_type", "must not be empty")
			}
			r.DeviceType = s
		}
		if n, ok := rt.Int("count"); ok {
			if n < 1 {
				rt.Errorf("count", "must be >= 1 (got %d)", n)
			}
			r.Count = int(min(max(n, 0), MaxNodes+1)) // clamped: the total is checked below
		}
		r.Essential, _ = rt.Bool("essential")
		if tags, ok := rt.Strings("tags"); ok && len(tags) > 0 {
			for _, tag := range tags {
				if tag == "" {
					rt.Errorf("tags", "tags must not be empty strings")
				}
			}
			r.Tags = tags
		}
		if d, ok := positive(rt, "timeout"); ok {
			r.Timeout = d
		}
		total += r.Count
		roles = append(roles, r)
	}
	if total > MaxNodes {
		t.Errorf("", "the job has %d nodes; at most %d are allowed", total, MaxNodes)
	}
	checkHosts(t, roles)
	return roles
}

// checkHosts checks the host of every guest role: a role of the job,
// not a guest itself, with one node.
func checkHosts(t tomlfile.Table, roles []Role) {
	guests := map[string]int{}
	for _, r := range roles {
		if r.Guest() {
			guests[r.Host] += r.Count
		}
	}
	for _, h := range slices.Sorted(maps.Keys(guests)) {
		if guests[h] > MaxGuests {
			t.Errorf("", "role %q hosts %d guests; at most %d log in to one board", h, guests[h], MaxGuests)
		}
	}
	for _, r := range roles {
		if !r.Guest() {
			continue
		}
		rt, _ := t.Table(r.Name)
		h := slices.IndexFunc(roles, func(o Role) bool { return o.Name == r.Host })
		switch {
		case h < 0:
			rt.Errorf("host", "undefined role %q", r.Host)
		case roles[h].Guest():
			rt.Errorf("host", "role %q is a guest itself: a host role has a board of its own", r.Host)
		case roles[h].Count != 1:
			rt.Errorf("host", "role %q has %d nodes: a host role has one (its guests log in to its board)", r.Host, roles[h].Count)
		}
	}
}

func parseActions(tables []tomlfile.Table, j *Job) []Action {
	all := make([]string, len(j.Roles))
	for i, r := range j.Roles {
		all[i] = r.Name
	}
	tests := map[string]string{} // test name -> key of its action
	var actions []Action
	for i, t := range tables {
		a := Action{Index: i, Roles: all, Line: t.Line()}
		t.Only("type", "roles", "image", "images", "timeout", "name", "run", "parse", "fixup", "before", "commands", "retries", "login", "address")
		if lt, ok := t.Table("login"); ok {
			a.Login = parseLogin(lt)
		}
		if n, ok := t.Int("retries"); ok {
			if n < 0 || n > MaxRetries {
				t.Errorf("retries", "must be between 0 and %d (got %d)", MaxRetries, n)
			} else {
				a.Retries = int(n)
			}
		}
		t.Require("type")
		if typ, ok := t.String("type"); ok {
			a.Type = ActionType(typ) // reset below if invalid
			switch a.Type {
			case Deploy:
				a.Timeout = DefaultDeployTimeout
			case Boot:
				a.Timeout = DefaultBootTimeout
			case Test:
			default:
				a.Type = ""
				t.Errorf("type", "must be one of deploy, boot, test (got %q)", typ)
			}
		}
		if roles, ok := t.Strings("roles"); ok {
			a.Roles = actionRoles(t, roles, j)
		}
		if before, ok := t.Strings("before"); ok {
			for _, b := range before {
				r, err := ParseRequest(b)
				if err != nil {
					t.Errorf("before", "%v", err)
					continue
				}
				if r.Kind == "wait-all" && len(r.Args) == 1 {
					if _, ok := j.Role(r.Args[0]); !ok {
						t.Errorf("before", "%q: undefined role %q", b, r.Args[0])
					}
				}
				a.Before = append(a.Before, r)
			}
		}
		if d, ok := t.Duration("timeout"); ok {
			if d < 0 {
				t.Errorf("timeout", "must not be negative (got %q)", t.M["timeout"])
			} else if d > 0 {
				a.Timeout = d
			}
		}
		if at, ok := t.Table("address"); ok && a.Type == Boot {
			a.Address = parseAddress(at)
			for _, r := range a.Roles {
				if role, ok := j.Role(r); ok && !role.Guest() {
					t.Errorf("address", "role %q is not a guest: only a guest's boot takes its host's address from a message", r)
				}
			}
		}
		if a.Type == Deploy && (t.Has("image") || t.Has("images")) {
			for _, r := range a.Roles {
				if role, ok := j.Role(r); ok && role.Guest() {
					t.Errorf("", "role %q is a guest: it logs in to its host's board and has nothing to deploy", r)
				}
			}
		}
		for _, k := range []string{"image", "images", "name", "run", "parse", "fixup", "commands", "login", "address"} {
			if t.Has(k) && a.Type != "" && !allows(a.Type, k) {
				t.Errorf(k, "not allowed on a %s action", a.Type)
			}
		}
		if a.Type == Deploy {
			if img, ok := t.String("image"); ok {
				a.Image = imagePath(t, "image", j.File, img)
			}
			if it, ok := t.Table("images"); ok {
				a.Images = parseImages(it, j.File)
				if t.Has("image") {
					t.Errorf("images", "a deploy action has image or images, not both")
				}
			}
		}
		if _, list := t.M["commands"].([]any); list {
			if cmds, ok := t.Strings("commands"); ok && a.Type == Boot && checkCommands(t, "commands", cmds) {
				a.BootCommands = cmds
			}
		} else if c, ok := t.String("commands"); ok && a.Type == Boot {
			if !commandSetName.MatchString(c) {
				t.Errorf("commands", "names a command set of the board's lab entry: letters, digits, '_' and '-' (got %q); a list gives the commands themselves", c)
			}
			a.Commands = c
		}
		if a.Type == Test {
			t.Require("name", "run")
			if name, ok := t.String("name"); ok {
				a.Name = name
				if checkName(t, "name", name, ".-") {
					if prev, dup := tests[name]; dup {
						t.Errorf("name", "duplicate test name %q (also used by %s)", name, prev)
					} else {
						tests[name] = t.Path
					}
				}
			}
			if run, ok := t.String("run"); ok {
				if strings.TrimSpace(run) == "" {
					t.Errorf("run", "must not be empty")
				}
				a.Run = run
			}
			a.Parse, a.Fixup = parsePattern(t)
		}
		actions = append(actions, a)
	}
	checkBooted(tables, actions, j)
	return actions
}

// checkBooted records an error for every test action that runs on a role
// no boot action before it has booted: it would run on a board that is
// off, and the board, not the job, would be blamed.
func checkBooted(tables []tomlfile.Table, actions []Action, j *Job) {
	booted := map[string]bool{}
	for i, a := range actions {
		for _, r := range a.Roles {
			if _, ok := j.Role(r); !ok {
				continue // an error already
			}
			switch {
			case a.Type == Boot:
				booted[r] = true
			case a.Type == Test && !booted[r]:
				tables[i].Errorf("", "test %q runs on role %q before any boot action of that role: boot it first", a.Name, r)
			}
		}
	}
}

func actionRoles(t tomlfile.Table, roles []string, j *Job) []string {
	if len(roles) == 0 {
		t.Errorf("roles", "must not be empty (omit it to run on all roles)")
	}
	seen := map[string]bool{}
	for _, r := range roles {
		if _, ok := j.Role(r); !ok {
			t.Errorf("roles", "undefined role %q", r)
		}
		if seen[r] {
			t.Errorf("roles", "duplicate role %q", r)
		}
		seen[r] = true
	}
	return roles
}

// parseImages reads a deploy action's images = {kernel, initrd, rootfs, dtb}.
func parseImages(t tomlfile.Table, file string) *Images {
	t.Only("kernel", "initrd", "rootfs", "dtb", "files")
	im := &Images{}
	if ft, ok := t.Table("files"); ok {
		for _, k := range ft.Keys() {
			if !imageFileName.MatchString(k) || slices.Contains(fixedImages, k) {
				ft.Errorf(k, "an image name is lower-case letters, digits and '_', and not %s", strings.Join(fixedImages, ", "))
				continue
			}
			if s, ok := ft.String(k); ok {
				if im.Files == nil {
					im.Files = map[string]string{}
				}
				im.Files[k] = imagePath(ft, k, file, s)
			}
		}
		if len(ft.Keys()) == 0 {
			t.Errorf("files", "must not be empty")
		}
	}
	if !t.Has("files") && !t.Has("rootfs") {
		t.Require("kernel") // a rootfs alone is a disk the board boots, files are staged by name
	}
	for _, f := range []struct {
		k   string
		dst *string
	}{{"kernel", &im.Kernel}, {"initrd", &im.Initrd}, {"rootfs", &im.Rootfs}, {"dtb", &im.DTB}} {
		k, dst := f.k, f.dst
		if s, ok := t.String(k); ok {
			*dst = imagePath(t, k, file, s)
		}
	}
	return im
}

// Results are the test case results of troupe and LAVA.
var Results = []string{"pass", "fail", "skip", "unknown"}

// parsePattern reads a test action's parse and fixup keys.
func parsePattern(t tomlfile.Table) (string, map[string]string) {
	pattern, ok := t.String("parse")
	if ok {
		re, err := regexp.Compile(pattern)
		switch {
		case err != nil:
			t.Errorf("parse", "not a regular expression: %v", err)
		case !slices.Contains(re.SubexpNames(), "test_case_id") || !slices.Contains(re.SubexpNames(), "result"):
			t.Errorf("parse", "needs the named groups (?P<test_case_id>...) and (?P<result>...)")
		}
	}
	ft, ok := t.Table("fixup")
	if !ok {
		return pattern, nil
	}
	if pattern == "" {
		t.Errorf("fixup", "needs parse")
	}
	fixup := map[string]string{}
	for _, k := range ft.Keys() {
		if v, ok := ft.String(k); ok {
			if !slices.Contains(Results, v) {
				ft.Errorf(k, "must be one of %s (got %q)", strings.Join(Results, ", "), v)
			}
			fixup[k] = v
		}
	}
	return pattern, fixup
}

func allows(typ ActionType, key string) bool {
	switch key {
	case "image", "images":
		return typ == Deploy
	case "commands", "login", "address":
		return typ == Boot
	default: // name, run, parse, fixup
		return typ == Test
	}
}

// positive reads a duration that must be > 0.
func positive(t tomlfile.Table, k string) (time.Duration, bool) {
	d, ok := t.Duration(k)
	if ok && d <= 0 {
		t.Errorf(k, "must be > 0 (got %q)", t.M[k])
		return 0, false
	}
	return d, ok
}

// checkName checks that name is non-empty and made of letters, digits, '_'
// and the characters in extra.
func checkName(t tomlfile.Table, k, name, extra string) bool {
	if validName(name, extra) {
		return true
	}
	allowed := "letters, digits and '_'"
	if extra != "" {
		allowed = "letters, digits, '_', '.' and '-'"
	}
	if name == "" {
		t.Errorf(k, "must not be empty")
	} else {
		t.Errorf(k, "must contain only %s (got %q)", allowed, name)
	}
	return false
}

// checkJobName checks what a job name needs beyond checkName: it names
// result folders, so it starts with a letter or digit, is short, and has
// no "..".
func checkJobName(t tomlfile.Table, name string) {
	switch {
	case !isAlnum(name[0]):
		t.Errorf("name", "must start with a letter or digit (got %q)", name)
	case len(name) > MaxNameLen:
		t.Errorf("name", "must be at most %d characters (got %d)", MaxNameLen, len(name))
	case strings.Contains(name, ".."):
		t.Errorf("name", `must not contain ".." (got %q)`, name)
	}
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func validName(s, extra string) bool {
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || strings.ContainsRune(extra, c)
		if !ok {
			return false
		}
	}
	return s != ""
}

// Nodes lists the nodes of the job: by role (sorted by name), then index.
func (j *Job) Nodes() []Node {
	var nodes []Node
	for _, r := range j.Roles {
		for i := range r.Count {
			nodes = append(nodes, Node{Name: fmt.Sprintf("%s-%d", r.Name, i), Role: r.Name, Index: i})
		}
	}
	return nodes
}

// Role returns the role called name.
func (j *Job) Role(name string) (Role, bool) {
	for _, r := range j.Roles {
		if r.Name == name {
			return r, true
		}
	}
	return Role{}, false
}

// ActionsFor returns the actions that run on role, in order.
func (j *Job) ActionsFor(role string) []Action {
	var out []Action
	for _, a := range j.Actions {
		for _, r := range a.Roles {
			if r == role {
				out = append(out, a)
				break
			}
		}
	}
	return out
}
