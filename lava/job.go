package lava

// The job mapping: LAVA job keys (name, timeouts, priority, roles, deploy, boot) to a troupe job.

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/troupe-lab/troupe/jobs"
)

// sanitize makes s a valid troupe job or test name: characters other than
// letters, digits, '.', '_' and '-' become '-' (one for each run), and '-' is
// trimmed from both ends.
func sanitize(s string) string {
	var b strings.Builder
	replaced := false
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			b.WriteRune(c)
			replaced = false
		} else if !replaced {
			b.WriteByte('-')
			replaced = true
		}
	}
	return strings.Trim(b.String(), "-")
}

// roleName makes a LAVA role name a troupe one; ok is false if it cannot.
func roleName(s string) (string, bool) {
	t := strings.ReplaceAll(s, "-", "_")
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return "", false
		}
	}
	return t, t != ""
}

func (im *importer) job(root *yaml.Node) *jobs.Job {
	j := &jobs.Job{File: im.file, Timeout: jobs.DefaultTimeout, Priority: jobs.DefaultPriority, MultinodeTimeout: jobs.DefaultMultinodeTimeout}
	m, ok := im.mapping(root, "")
	if !ok {
		return j
	}
	var protocols, actions, deviceType, tags *entry
	target, targetLine := "", 0
	for _, e := range m.entries {
		switch e.key {
		case "job_name":
			if s, ok := im.str(e.v, e.path); ok {
				j.Name = sanitize(s)
				if j.Name == "" {
					im.errorf(e.line, e.path, "%q has no letters or digits to make a troupe job name of", s)
				}
			}
		case "timeouts":
			im.timeouts(e, j)
		case "priority":
			im.priority(e, j)
		case "protocols":
			protocols = &e
		case "device_type":
			deviceType = &e
		case "tags":
			tags = &e
		case "actions":
			actions = &e
		case "context":
			j.Context = im.context(e)
		case "secrets":
			j.Secrets = im.secrets(e)
		case "reboot_to_fastboot":
			im.boolean(e)
		case "target":
			// A dispatcher's sub-job names its device; troupe places a role
			// on a board of its lab by device type.
			if s, ok := im.str(e.v, e.path); ok {
				target = s
				targetLine = e.line
			}
		case "connection", "host_role":
			// A guest's sub-job: reached over ssh from its host role.
			if isString(e.v) && e.v.Value == "serial" {
				continue
			}
			im.refuse(e, WhyGuestSubJob)
		case "visibility", "metadata", "notify": // Ignored
		default:
			im.unsupported(e, "")
		}
	}
	im.required(m, "job_name", "actions")

	multinode := false
	if protocols != nil {
		multinode = im.protocols(*protocols, j)
	}
	if target != "" && deviceType == nil && actions != nil {
		// The device's type from the boot method, for a dispatcher's job.
		if dt := bootDeviceType(actions.v); dt != "" {
			deviceType = &entry{key: "device_type", path: "device_type", line: targetLine,
				v: &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: dt, Line: targetLine}}
			im.warnf(targetLine, "target", "device %q: troupe places the job on a board of device type %s (from boot.method) of its lab, not on a named device", target, dt)
		}
	}
	switch {
	case im.subJob != nil:
		im.subJobRole(j, deviceType, tags)
	case multinode:
		if deviceType != nil {
			im.unsupported(*deviceType, "a MultiNode job has no top-level device_type; give each role its device_type")
		}
		if tags != nil {
			im.unsupported(*tags, "a MultiNode job has no top-level tags; give each role its tags")
		}
	case deviceType != nil:
		im.singleNode(*deviceType, tags, j)
	default:
		if tags != nil {
			im.unsupported(*tags, "top-level tags need a top-level device_type (single-node job)")
		}
		im.errorf(m.line, "device_type", "is required: give device_type (single-node job) or protocols.lava-multinode.roles (MultiNode job)")
	}
	im.roleTypes = map[string]string{}
	for _, r := range j.Roles {
		im.allRoles = append(im.allRoles, r.Name)
		im.roleTypes[r.Name] = r.DeviceType
	}

	if actions != nil {
		j.Actions = im.actions(*actions)
	}
	return j
}

func (im *importer) timeouts(e entry, j *jobs.Job) {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return
	}
	for _, t := range m.entries {
		switch t.key {
		case "job":
			if d, ok := im.duration(t); ok {
				j.Timeout = d
			}
		case "action":
			if d, ok := im.duration(t); ok {
				im.actionTimeout = d
			}
		case "actions", "connection", "connections":
			im.timeoutKey(t, im.perType)
		default:
			im.unsupported(t, "")
		}
	}
}

func (im *importer) priority(e entry, j *jobs.Job) {
	if isString(e.v) {
		p, ok := Priorities[e.v.Value]
		if !ok {
			im.errorf(e.line, e.path, "must be high, medium, low or an integer 0..100 (got %q)", e.v.Value)
			return
		}
		j.Priority = p
		return
	}
	n, ok := im.integer(e)
	if !ok {
		return
	}
	if n < 0 || n > 100 {
		im.errorf(e.line, e.path, "must be between 0 and 100 (got %d)", n)
		return
	}
	j.Priority = int(n)
}

// protocols reads the protocols and reports whether lava-multinode is one.
func (im *importer) protocols(e entry, j *jobs.Job) bool {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return false
	}
	found := false
	for _, p := range m.entries {
		if p.key != "lava-multinode" {
			im.unsupported(p, "not supported: troupe imports only the lava-multinode protocol")
			continue
		}
		found = true
		mn, ok := im.mapping(p.v, p.path)
		if !ok {
			continue
		}
		// The timeout first: it is the default of the roles' timeouts.
		if t, ok := mn.get("timeout"); ok {
			if d, ok := im.duration(t); ok {
				j.MultinodeTimeout = d
			}
		}
		if r, ok := mn.get("role"); ok {
			im.subJob = &subJob{role: r, mn: mn}
		}
		for _, k := range mn.entries {
			switch k.key {
			case "timeout":
			case "roles":
				if im.subJob != nil {
					im.subJobRoles(k)
					continue
				}
				j.Roles = im.roles(k, j.MultinodeTimeout)
			case "target_group", "sub_id", "group_size", "role", "tags", "roles_count", "request", "expect_role":
				// One node's sub-job, which LAVA's scheduler splits from a
				// MultiNode job: read by subJobRole.
			default:
				im.unsupported(k, "")
			}
		}
		if im.subJob == nil {
			im.required(mn, "roles")
		}
	}
	return found
}

// subJob is one node's part of a MultiNode job, as LAVA's scheduler
// writes it for its dispatcher: protocols.lava-multinode.role names its
// role, target_group, sub_id and group_size its place in the group.
type subJob struct {
	role entry
	mn   *mapping
}

// subJobRoles reads the roles of a sub-job: LAVA's dispatcher form maps
// device names to role names; only the sub-job's own role takes part.
func (im *importer) subJobRoles(e entry) {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return
	}
	for _, r := range m.entries {
		if r.v.Kind == yaml.MappingNode {
			im.unsupported(r, "a sub-job (protocols.lava-multinode.role) names the roles of its group by device; give troupe the MultiNode job to run the group")
		} else {
			im.str(r.v, r.path)
		}
	}
}

// subJobRole makes the sub-job's one role: its device_type and tags are
// the job's, the count 1. The group's other nodes are in their own
// sub-jobs: the job runs alone, which is said once.
func (im *importer) subJobRole(j *jobs.Job, dt, tags *entry) {
	sj := im.subJob
	lavaName, ok := im.str(sj.role.v, sj.role.path)
	if !ok {
		return
	}
	name, ok := roleName(lavaName)
	if !ok {
		im.errorf(sj.role.line, sj.role.path, "role name %q may contain only letters, digits, '_' and '-'", lavaName)
		return
	}
	im.lavaRoles[lavaName] = name
	r := jobs.Role{Name: name, Count: 1, Timeout: j.MultinodeTimeout}
	if dt == nil {
		im.errorf(sj.mn.line, "device_type", "is required: a sub-job (protocols.lava-multinode.role) gives its device_type at the top level")
		return
	}
	r.DeviceType, _ = im.deviceType(*dt)
	if tags != nil {
		r.Tags = im.tags(*tags)
	}
	if t, ok := sj.mn.get("tags"); ok {
		r.Tags = append(r.Tags, im.tags(t)...)
	}
	for _, k := range []string{"sub_id", "group_size"} {
		if e, ok := sj.mn.get(k); ok {
			im.integer(e)
		}
	}
	for _, k := range []string{"target_group", "request", "expect_role"} {
		if e, ok := sj.mn.get(k); ok {
			im.str(e.v, e.path)
		}
	}
	j.Roles = []jobs.Role{r}
	im.warnf(sj.role.line, sj.role.path, "this is the sub-job of role %s, which LAVA's scheduler splits from a MultiNode job: troupe runs it as a job of that one role, without the other nodes of its group (their requests and messages never come; lava-wait for them ends at the MultiNode timeout); give troupe the MultiNode job to run the group", lavaName)
}

// bootDeviceType is the LAVA device type a job's boot method implies, if
// one does (qemu).
func bootDeviceType(actions *yaml.Node) string {
	actions = deref(actions)
	if actions == nil || actions.Kind != yaml.SequenceNode {
		return ""
	}
	for _, a := range actions.Content {
		a = deref(a)
		if a == nil || a.Kind != yaml.MappingNode || len(a.Content) != 2 || a.Content[0].Value != "boot" {
			continue
		}
		b := deref(a.Content[1])
		for i := 0; b != nil && b.Kind == yaml.MappingNode && i+1 < len(b.Content); i += 2 {
			if b.Content[i].Value == "method" && b.Content[i+1].Value == "qemu" {
				return "qemu"
			}
		}
	}
	return ""
}

func (im *importer) roles(e entry, multinode time.Duration) []jobs.Role {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return nil
	}
	if len(m.entries) == 0 {
		im.errorf(e.line, e.path, "at least one role is required")
	}
	byName := map[string]string{} // troupe name -> LAVA name
	var roles []jobs.Role
	total := 0
	for _, re := range m.entries {
		name, ok := roleName(re.key)
		im.lavaRoles[re.key] = name
		if !ok {
			im.errorf(re.line, re.path, "role name %q may contain only letters, digits, '_' and '-'", re.key)
			continue
		}
		if prev, dup := byName[name]; dup {
			im.errorf(re.line, re.path, "roles %q and %q would both be called %q in troupe ('-' becomes '_')", prev, re.key, name)
			im.lavaRoles[re.key] = ""
			continue
		}
		byName[name] = re.key
		r, ok := im.role(re, name, multinode)
		if !ok {
			continue
		}
		total += r.Count
		roles = append(roles, r)
	}
	for i := range roles {
		// A guest's host_role, read as its LAVA name: troupe's name now.
		if h := roles[i].Host; h != "" {
			if t, known := im.lavaRoles[h]; known && t != "" {
				roles[i].Host = t
			} else {
				im.errorf(e.line, e.path+"."+byName[roles[i].Name]+".host_role", "undefined role %q", h)
				roles[i].Host = ""
			}
		}
	}
	if total > jobs.MaxNodes {
		im.errorf(e.line, e.path, "the job has %d nodes; at most %d are allowed", total, jobs.MaxNodes)
	}
	slices.SortFunc(roles, func(a, b jobs.Role) int { return strings.Compare(a.Name, b.Name) })
	return roles
}

func (im *importer) role(e entry, name string, multinode time.Duration) (jobs.Role, bool) {
	r := jobs.Role{Name: name, Count: 1, Timeout: multinode}
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return r, false
	}
	var dt *entry
	for _, k := range m.entries {
		switch k.key {
		case "device_type":
			dt = &k
			r.DeviceType, _ = im.deviceType(k)
		case "count":
			if n, ok := im.integer(k); ok {
				if n < 1 || n > jobs.MaxNodes {
					im.errorf(k.line, k.path, "must be between 1 and %d (got %d)", jobs.MaxNodes, n)
				} else {
					r.Count = int(n)
				}
			}
		case "tags":
			r.Tags = im.tags(k)
		case "essential":
			r.Essential, _ = im.boolean(k)
		case "timeout":
			if d, ok := im.duration(k); ok {
				r.Timeout = d
			}
		case "context":
			r.Context = im.context(k)
		case "connection", "host_role", "expect_role", "request":
		default:
			im.unsupported(k, "")
		}
	}
	if !im.guestRole(m, &r) {
		im.required(m, "device_type")
		return r, true
	}
	if dt != nil {
		im.warnf(dt.line, dt.path, "a guest role (connection: ssh) takes no board: troupe logs it in to a board of its host role %s, not to a %s", r.Host, r.DeviceType)
		r.DeviceType = ""
	}
	if r.Tags != nil {
		im.warnf(m.line, e.path+".tags", "a guest role (connection: ssh) takes no board: its tags are not used")
		r.Tags = nil
	}
	if r.Context != nil {
		im.warnf(m.line, e.path+".context", "a guest role (connection: ssh) takes no board: its context is not used")
		r.Context = nil
	}
	return r, true
}

func (im *importer) deviceType(e entry) (string, bool) {
	s, ok := im.str(e.v, e.path)
	if ok && s == "" {
		im.errorf(e.line, e.path, "must not be empty")
		return "", false
	}
	return s, ok
}

func (im *importer) tags(e entry) []string {
	tags, ok := im.strings(e)
	if !ok {
		return nil
	}
	for _, t := range tags {
		if t == "" {
			im.errorf(e.line, e.path, "tags must not be empty strings")
			return nil
		}
	}
	if len(tags) == 0 {
		return nil
	}
	return tags
}

func (im *importer) singleNode(dt entry, tags *entry, j *jobs.Job) {
	r := jobs.Role{Name: SingleNodeRole, Count: 1, Timeout: j.MultinodeTimeout}
	r.DeviceType, _ = im.deviceType(dt)
	if tags != nil {
		r.Tags = im.tags(*tags)
	}
	j.Roles = []jobs.Role{r}
}

func (im *importer) actions(e entry) []jobs.Action {
	elems, ok := im.sequence(e)
	if !ok {
		return nil
	}
	if len(elems) == 0 {
		im.errorf(e.line, e.path, "at least one action is required")
	}
	var out []jobs.Action
	for i, n := range elems {
		path := fmt.Sprintf("%s[%d]", e.path, i)
		m, ok := im.mapping(n, path)
		if !ok {
			continue
		}
		if len(m.entries) != 1 {
			im.errorf(m.line, path, "an action must be a mapping with one key: deploy, boot or test (got %d keys)", len(m.entries))
			continue
		}
		a := m.entries[0]
		switch a.key {
		case "deploy":
			if act, ok := im.deployLAVA(a, im.opts.Downloads); ok {
				out = append(out, act)
			}
		case "boot":
			if act, ok := im.bootLAVA(a); ok {
				out = append(out, act)
			}
		case "test":
			if d, ok := rawKey(a.v, "docker"); ok {
				im.refuse(entry{key: "docker", path: a.path + ".docker", line: d.Line}, WhyDockerTest)
				continue
			}
			out = append(out, im.test(a)...)
		case "command":
			im.errorf(a.line, a.path, "command actions run commands on the LAVA worker; troupe runs nothing on its host for a job: put the step in a test on a board")
		default:
			im.errorf(a.line, a.path, "%q actions are not supported; troupe imports deploy, boot and test actions", a.key)
		}
	}
	for i := range out {
		out[i].Index = i
	}
	return out
}

// actionRoles reads the role list of an action.
func (im *importer) actionRoles(e entry) []string {
	var names []string
	ok := true
	if isString(e.v) {
		names = []string{e.v.Value} // LAVA also takes one role as a string
	} else {
		names, ok = im.strings(e)
	}
	if !ok {
		return nil
	}
	if len(names) == 0 {
		im.errorf(e.line, e.path, "must not be empty (omit it to run on all roles)")
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		t, known := im.lavaRoles[n]
		switch {
		case !known:
			im.errorf(e.line, e.path, "undefined role %q", n)
		case t == "": // an invalid role, reported already
		case seen[n]:
			im.errorf(e.line, e.path, "duplicate role %q", n)
		default:
			seen[n] = true
			out = append(out, t)
		}
	}
	return out
}

// common reads the keys every action has: role and timeout. It reports
// whether e is one of them.
func (im *importer) common(e entry, a *jobs.Action) bool {
	switch e.key {
	case "role":
		if roles := im.actionRoles(e); roles != nil {
			a.Roles = roles
		}
	case "timeout":
		if d, ok := im.duration(e); ok {
			a.Timeout = d
		}
	default:
		return false
	}
	return true
}

func (im *importer) newAction(typ jobs.ActionType, line int, def time.Duration) jobs.Action {
	if im.actionTimeout > 0 {
		def = im.actionTimeout
	}
	if d := im.perType[typ]; d > 0 {
		def = time.Duration(d)
	}
	return jobs.Action{Type: typ, Roles: im.allRoles, Timeout: def, Line: line}
}

var scheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)

// localPath checks the url of a local image: a path relative to the
// images root, without "..". file:// URLs and absolute paths are refused:
// a job names only what is under the images root (or downloads it).
func (im *importer) localPath(e entry, s string) (string, bool) {
	if s == "" {
		im.errorf(e.line, e.path, "must not be empty")
		return "", false
	}
	if scheme.MatchString(s) {
		u, err := url.Parse(s)
		if err == nil && strings.EqualFold(u.Scheme, "file") {
			im.errorf(e.line, e.path, "%q: file:// URLs are not accepted; place the image under the images root (the job file's directory, or the server's --images directory) and give its path relative to it, or give an http(s) URL (mapped to a local mirror with --lava-mirror URL=DIR)", s)
			return "", false
		}
		im.errorf(e.line, e.path, "%q: troupe fetches images over http(s) only: give an http(s) URL, or place the image under the images root and give its path relative to it", s)
		return "", false
	}
	if !filepath.IsLocal(s) || slices.Contains(strings.Split(filepath.ToSlash(s), "/"), "..") {
		im.errorf(e.line, e.path, "%q must be a path inside the images root, without '..': place the image under the images root (the job file's directory, or the server's --images directory) and give its path relative to it, or give an http(s) URL (mapped to a local mirror with --lava-mirror URL=DIR)", s)
		return "", false
	}
	return filepath.Clean(s), true
}

// imagePath is the path of image rel (relative to the images root) as a
// troupe job holds it: relative to the job file's directory, which
// jobs.Job.ConfineImages resolves under the images root.
func (im *importer) imagePath(rel string) string {
	return filepath.Join(filepath.Dir(im.file), rel)
}

// rawKey finds the key k of the mapping n without reading it as the
// importer does (no warnings or errors): its key node.
func rawKey(n *yaml.Node, k string) (*yaml.Node, bool) {
	n = deref(n)
	for i := 0; n != nil && n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == k {
			return n.Content[i], true
		}
	}
	return nil, false
}

// secrets reads the job's secrets: LAVA gives them to the test shell;
// troupe exports them to every test's environment and masks their values
// in the logs. Errors never quote a value.
func (im *importer) secrets(e entry) map[string]string {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return nil
	}
	out := map[string]string{}
	for _, k := range m.entries {
		switch {
		case !shellName.MatchString(k.key) || len(k.key) > 64:
			im.errorf(k.line, k.path, "a secret's name must be a shell variable name")
		case k.v.Kind != yaml.ScalarNode || k.v.ShortTag() == "!!null":
			im.errorf(k.line, k.path, "must be a text value")
		case k.v.Value == "":
			im.errorf(k.line, k.path, "must not be empty")
		default:
			out[k.key] = k.v.Value
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// context reads a job's or role's context: LAVA's values for the device
// templates. troupe keeps them for the boards' boot command templates
// ({name}); a list becomes its items joined by spaces.
func (im *importer) context(e entry) map[string]string {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return nil
	}
	out := map[string]string{}
	for _, k := range m.entries {
		if !shellName.MatchString(k.key) || len(k.key) > 64 {
			im.errorf(k.line, k.path, "a context name is letters, digits and '_', not starting with a digit")
			continue
		}
		switch {
		case k.v.Kind == yaml.ScalarNode && k.v.ShortTag() != "!!null":
			out[k.key] = k.v.Value
		case k.v.Kind == yaml.SequenceNode:
			var items []string
			for i, n := range k.v.Content {
				n = deref(n)
				if n == nil || n.Kind != yaml.ScalarNode {
					im.typeError(n, fmt.Sprintf("%s[%d]", k.path, i), "a value")
					continue
				}
				items = append(items, n.Value)
			}
			out[k.key] = strings.Join(items, " ")
		default:
			im.typeError(k.v, k.path, "a value or a list of values")
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
