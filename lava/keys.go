package lava

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/troupe-lab/troupe/jobs"
)

// LAVA keys beyond troupe's first importer: accepted, honoured where troupe
// has the concept, and refused with one line saying what troupe does
// instead where it has not.

// Refusals of whole LAVA features, one line each.
const (
	// WhyGuestSubJob is the one line that refuses the sub-job of an ssh
	// guest role.
	WhyGuestSubJob = "not supported: this is the sub-job of an ssh guest role (connection: ssh, host_role), which LAVA's scheduler splits from a MultiNode job; a guest logs in to its host role's board, and a sub-job has no host: give troupe the MultiNode job, where the guest role's host_role names its host"
	// WhyDockerTest is the one line that refuses LAVA's docker test shell.
	WhyDockerTest = "not supported: LAVA's docker test shell runs the test in a container beside the board (with adb/fastboot to it); troupe runs every test on the board itself: put the steps in a test on the board"
	whyLXC        = "not supported: LXC was dropped by LAVA itself; troupe has no containers"
	whyVLANd      = "not supported: LAVA's VLANd protocol was dropped by LAVA itself; troupe gives each group a private network of its own"
	whyNS         = "not supported: troupe runs one deploy/boot/test sequence per board; LAVA namespaces (several connections per device) have no troupe equivalent"
)

// timeoutKey handles timeouts.connection, timeouts.connections and
// timeouts.actions.<name>, reporting whether k was one of them.
// Connection timeouts bound LAVA's per-connection reads; troupe bounds each
// action as a whole, so they are checked and kept out of the way.
// timeouts.actions maps LAVA action names to troupe actions where one
// corresponds (lava-test-shell → test actions, *deploy* → deploy,
// *boot*/auto-login-action → boot); the others are checked and accepted.
func (im *importer) timeoutKey(t entry, perType map[jobs.ActionType]int64) bool {
	switch t.key {
	case "connection":
		im.duration(t)
	case "connections", "actions":
		m, ok := im.mapping(t.v, t.path)
		if !ok {
			return true
		}
		for _, a := range m.entries {
			d, ok := im.duration(a)
			if !ok || t.key == "connections" {
				continue
			}
			if typ, ok := lavaActionType(a.key); ok {
				perType[typ] = int64(d)
			}
		}
	default:
		return false
	}
	return true
}

// lavaActionType maps LAVA pipeline action names to troupe action types.
func lavaActionType(name string) (jobs.ActionType, bool) {
	switch {
	case name == "lava-test-shell" || name == "lava-test-retry" || name == "test":
		return jobs.Test, true
	case strings.Contains(name, "deploy") || strings.HasSuffix(name, "-download") || name == "download-retry":
		return jobs.Deploy, true
	case strings.Contains(name, "boot") || name == "auto-login-action" || name == "execute-qemu":
		return jobs.Boot, true
	}
	return "", false
}

// actionKey handles the keys every LAVA action may have beyond role and
// timeout: failure_retry, repeat, protocols (lava-multinode requests run
// before the action), namespace, connection, connection-namespace. It
// reports whether k was one of them.
func (im *importer) actionKey(k entry, a *jobs.Action, lavaName string) bool {
	switch k.key {
	case "failure_retry":
		// LAVA's attempts in all: the action runs again on the board's
		// failures (jobs.Action.Retries), up to jobs.MaxRetries times.
		if n, ok := im.integer(k); ok {
			switch {
			case n < 1 || n > 100:
				im.errorf(k.line, k.path, "must be between 1 and 100 (got %d)", n)
			case n-1 > jobs.MaxRetries:
				im.warnf(k.line, k.path, "troupe runs an action at most %d times", jobs.MaxRetries+1)
				a.Retries = jobs.MaxRetries
			default:
				a.Retries = int(n - 1)
			}
		}
	case "name":
		im.str(k.v, k.path) // the LAVA action's name: descriptive
	case "repeat":
		im.unsupported(k, "not supported: troupe runs each action once; list the action again to repeat it")
	case "protocols":
		a.Before = append(a.Before, im.actionProtocols(k, lavaName)...)
	case "namespace", "connection-namespace":
		im.unsupported(k, whyNS)
	case "connection":
		// ssh: the action of a guest role (checked by guestAction).
		if s, ok := im.str(k.v, k.path); ok && s != "serial" && s != "ssh" {
			im.errorf(k.line, k.path, "%q is not a connection troupe makes (serial; ssh for the actions of guest roles)", s)
		}
	default:
		return false
	}
	return true
}

// actionProtocols reads an action's protocols: lava-multinode requests.
// LAVA makes each request before the named pipeline action of this
// action; troupe makes them, in order, before the action starts.
func (im *importer) actionProtocols(e entry, lavaName string) []jobs.Request {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return nil
	}
	var out []jobs.Request
	for _, p := range m.entries {
		if p.key != "lava-multinode" {
			im.unsupported(p, "not supported: troupe makes only lava-multinode requests in actions")
			continue
		}
		elems, ok := im.sequence(p)
		if !ok {
			continue
		}
		for i, n := range elems {
			path := fmt.Sprintf("%s[%d]", p.path, i)
			rm, ok := im.mapping(n, path)
			if !ok {
				continue
			}
			if r, ok := im.request(rm); ok {
				out = append(out, r)
			}
		}
	}
	return out
}

// request reads one lava-multinode request: action, request, messageID,
// message, timeout.
func (im *importer) request(m *mapping) (jobs.Request, bool) {
	var r jobs.Request
	ok := true
	var message *entry
	for _, k := range m.entries {
		switch k.key {
		case "action": // the pipeline action it precedes: troupe's is the whole action
			im.str(k.v, k.path)
		case "request":
			s, good := im.str(k.v, k.path)
			switch {
			case !good:
				ok = false
			case s == "lava-send", s == "lava-wait", s == "lava-wait-all", s == "lava-sync":
				r.Kind = strings.TrimPrefix(s, "lava-")
			default:
				im.errorf(k.line, k.path, "%q is not a MultiNode request troupe makes (lava-send, lava-wait, lava-wait-all, lava-sync)", s)
				ok = false
			}
		case "messageID":
			if k.v.Kind == yaml.ScalarNode && k.v.Value != "" {
				r.ID = k.v.Value
			} else {
				im.typeError(k.v, k.path, "a message id")
				ok = false
			}
		case "message":
			message = &k
		case "timeout":
			im.duration(k) // troupe's calls use the role's multinode timeout
		case "role":
			s, good := im.str(k.v, k.path)
			if good {
				t, known := im.lavaRoles[s]
				if !known || t == "" {
					im.errorf(k.line, k.path, "undefined role %q", s)
					ok = false
				} else {
					r.Args = []string{t}
				}
			}
		default:
			im.unsupported(k, "not a key of a lava-multinode request; troupe reads action, request, messageID, message, role and timeout")
			ok = false
		}
	}
	im.required(m, "request", "messageID")
	if message != nil {
		mm, good := im.mapping(message.v, message.path)
		if good && r.Kind == "send" {
			r.Args = nil
			for _, kv := range mm.entries {
				if kv.v.Kind != yaml.ScalarNode {
					im.typeError(kv.v, kv.path, "a string")
					ok = false
					continue
				}
				r.Args = append(r.Args, kv.key+"="+kv.v.Value)
			}
		}
		// The message of a wait names the keys LAVA substitutes into the
		// action's own parameters; troupe's actions take no parameters
		// from messages, so only the wait itself is kept.
	}
	if !ok || r.Kind == "" || r.ID == "" {
		return r, false
	}
	if r.Kind != "wait-all" && r.Kind != "send" {
		r.Args = nil
	}
	req, err := jobs.ParseRequest(r.String())
	if err != nil {
		im.errorf(m.line, m.path, "%v", err)
		return r, false
	}
	return req, true
}

// artifact reads one LAVA image: {url, compression, md5sum/sha256sum/
// sha512sum, image_arg, type, format, header, ...}, fetches it if needed
// and returns its local path.
func (im *importer) artifact(e entry, dl *Downloads) (string, bool) {
	if isString(e.v) {
		// The older short form: the URL alone.
		e.v = &yaml.Node{Kind: yaml.MappingNode, Line: e.v.Line, Content: []*yaml.Node{
			{Kind: yaml.ScalarNode, Tag: "!!str", Value: "url", Line: e.v.Line}, e.v}}
	}
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return "", false
	}
	var a Artifact
	var urlEntry entry
	ok = true
	for _, k := range m.entries {
		switch k.key {
		case "url":
			if s, good := im.str(k.v, k.path); good {
				a.URL, urlEntry = s, k
			} else {
				ok = false
			}
		case "compression":
			s, good := im.str(k.v, k.path)
			if good && s != "none" && s != "" && !slices.Contains(Compressions, s) {
				im.errorf(k.line, k.path, "%q is not a compression troupe decompresses (%s)", s, strings.Join(Compressions, ", "))
				ok = false
			}
			a.Compression = s
		case "md5sum", "sha256sum", "sha512sum":
			// A digest of digits only reads as a number in YAML: any scalar.
			if s, good := k.v.Value, k.v.Kind == yaml.ScalarNode && k.v.ShortTag() != "!!null"; good {
				if a.Checksums == nil {
					a.Checksums = map[string]string{}
				}
				a.Checksums[k.key] = s
			} else {
				im.typeError(k.v, k.path, "a hex digest")
				ok = false
			}
		case "image_arg":
			// QEMU command line fragment: troupe's QEMU board attaches the
			// kernel (-kernel), initrd (-initrd), dtb (-dtb) and rootfs (first
			// disk) itself.
			im.str(k.v, k.path)
		case "type", "format", "header", "install_modules", "install_overlay", "archive", "partition", "sparse", "root_partition":
			// type (zimage, uimage, image) picks the u-boot boot command,
			// which the board's lab entry gives; the others describe the
			// file for LAVA's own unpacking.
		case "apply-overlay", "overlays":
			im.unsupported(k, "not supported: troupe delivers the test files through the console, not into images")
			ok = false
		default:
			im.unsupported(k, "not a key of a LAVA image; troupe reads url, compression, md5sum, sha256sum, sha512sum, image_arg and type")
			ok = false
		}
	}
	if a.URL == "" {
		im.required(m, "url")
		return "", false
	}
	if !ok {
		return "", false
	}
	rel := ""
	// A file:// URL names a file of the LAVA worker: a mirror of the lab
	// (--lava-mirror file:///dir/=DIR) maps it, or it is refused.
	fetched := remote(a.URL)
	if dl != nil && strings.HasPrefix(strings.ToLower(a.URL), "file://") {
		_, fetched = dl.mirrored(a.URL)
	}
	if !fetched {
		if rel, ok = im.localPath(urlEntry, a.URL); !ok {
			return "", false
		}
	}
	if fetched || a.Compression != "" && a.Compression != "none" || len(a.Checksums) > 0 {
		if dl == nil {
			im.errorf(urlEntry.line, urlEntry.path, "%q: no download cache to fetch or check it in", a.URL)
			return "", false
		}
		if rel != "" {
			// Read only from inside the images root, symlinks followed; a
			// missing file and one outside get the same error.
			p, in := under(im.opts.Images, filepath.Join(im.opts.Images, rel))
			if !in {
				im.errorf(urlEntry.line, urlEntry.path, "%q is not a file in the images root", rel)
				return "", false
			}
			a.URL = p
		}
		var p string
		var err error
		if dl.Defer {
			p, err = dl.Path(a)
		} else {
			p, err = dl.Get(context.Background(), a)
		}
		if err != nil {
			im.errorf(urlEntry.line, urlEntry.path, "%v", err)
			return "", false
		}
		// The cache is under the images root (CacheDir): the path
		// relative to it is the job's.
		cached, err := filepath.Rel(im.opts.Images, p)
		if err != nil || !filepath.IsLocal(cached) {
			im.errorf(urlEntry.line, urlEntry.path, "%q: the download cache %s is not under the images root %s", a.URL, dl.Dir, im.opts.Images)
			return "", false
		}
		return im.imagePath(cached), true
	}
	return im.imagePath(rel), true
}

// deployTargets are the LAVA deploy methods (to:) troupe carries out.
var deployTargets = map[string]string{
	"tmpfs": "", "tftp": "", "nfs": "", "flasher": "", "usb": "", "sata": "", "ramdisk": "",
	"docker": "", "lxc": whyLXC, "ssh": "",
	"fastboot": "not supported: troupe has no fastboot deploy; a board's lab entry can flash with a command ([board.deploy] method = \"flasher\")",
}

// deployLAVA reads a LAVA deploy action. Images map to troupe's: a
// kernel (with initrd or ramdisk, dtb, and rootfs) becomes images =
// {kernel, initrd, dtb, rootfs} (QEMU boards boot them; u-boot boards
// with deploy method tftp fetch them); a rootfs alone becomes the image.
// http(s) URLs are downloaded once into a cache, checksums checked and
// compressed images unpacked.
func (im *importer) deployLAVA(e entry, dl *Downloads) (jobs.Action, bool) {
	a := im.newAction(jobs.Deploy, e.line, jobs.DefaultDeployTimeout)
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return a, false
	}
	imgs := map[string]string{}
	ok = true
	docker, image, to := false, (*entry)(nil), (*entry)(nil)
	var nfsEntry, modEntry *entry
	take := func(k entry, as string) {
		if p, good := im.artifact(k, dl); good {
			imgs[as] = p
		} else {
			ok = false
		}
		switch as {
		case "nfsrootfs":
			nfsEntry = &k
		case "modules":
			modEntry = &k
		}
	}
	for _, k := range m.entries {
		switch {
		case im.common(k, &a), im.actionKey(k, &a, "deploy"):
		case k.key == "to":
			if s, good := im.str(k.v, k.path); good {
				docker, to = s == "docker", &k
				if why, known := deployTargets[s]; !known {
					im.errorf(k.line, k.path, "%q is not a deploy method troupe carries out (tmpfs, tftp, nfs, flasher, usb, sata; ssh for guest roles)", s)
					ok = false
				} else if why != "" {
					im.unsupported(k, why)
					ok = false
				}
			}
		case k.key == "os", k.key == "authorize", k.key == "kernel_type":
			// os and authorize shape LAVA's overlay; troupe types its helpers in.
		case k.key == "image":
			image = &k
		case k.key == "kernel", k.key == "dtb", k.key == "rootfs":
			take(k, k.key)
		case k.key == "ramdisk", k.key == "initrd":
			take(k, "initrd")
		case k.key == "modules", k.key == "nfsrootfs":
			// Staged by name for the board's commands ({modules},
			// {nfsrootfs}): a u-boot board's nfs commands boot the
			// nfsrootfs as the kernel's root.
			take(k, k.key)
		case k.key == "dtbo":
			// Device tree overlays, one or a list: {dtbo}, {dtbo_2}, ...
			if k.v.Kind != yaml.SequenceNode {
				take(k, "dtbo")
				continue
			}
			for i, n := range k.v.Content {
				name := "dtbo"
				if i > 0 {
					name = fmt.Sprintf("dtbo_%d", i+1)
				}
				take(entry{key: k.key, path: fmt.Sprintf("%s[%d]", k.path, i), line: n.Line, v: deref(n)}, name)
			}
		case k.key == "images":
			im2, good := im.mapping(k.v, k.path)
			if !good {
				ok = false
				continue
			}
			for _, i := range im2.entries {
				switch i.key {
				case "kernel", "dtb", "rootfs", "nfsrootfs", "modules":
					take(i, i.key)
				case "initrd", "ramdisk":
					take(i, "initrd")
				case "disk", "hda", "sda", "drive":
					if _, dup := imgs["rootfs"]; dup {
						im.unsupported(i, "not supported: troupe's QEMU boards attach one disk (rootfs)")
						ok = false
						continue
					}
					take(i, "rootfs")
				default:
					// The images of flashing boot methods (jlink, pyocd,
					// ...): staged by name for the board's commands.
					name := strings.ToLower(sanitize(strings.ReplaceAll(i.key, "-", "_")))
					if !stagedName.MatchString(name) || slices.Contains(fixedImageNames, name) {
						im.unsupported(i, "not an image name troupe can stage: image names are letters, digits, '_' and '-', starting with a letter")
						ok = false
						continue
					}
					take(i, name)
				}
			}
		default:
			im.unsupported(k, "not a deploy key troupe reads; it reads to, images, kernel, ramdisk, dtb, rootfs, os, role, timeout, failure_retry and protocols")
			ok = false
		}
	}
	if to != nil && to.v.Value == "ssh" && !im.guestAction(*to, a.Roles, "deploy to: ssh") {
		return a, false
	}
	if docker {
		for _, r := range a.Roles {
			if dt := im.roleTypes[r]; dt != "docker" {
				im.unsupported(*to, fmt.Sprintf("not supported: deploy to: docker is for roles of device_type docker; troupe runs the tests of role %s (%s) on its board", r, dt))
				return a, false
			}
		}
	}
	if image != nil {
		if !docker {
			im.unsupported(*image, "an image names a docker image, for deploy to: docker only")
			return a, false
		}
		im.dockerImage(*image)
	}
	if !ok {
		return a, false
	}
	if nfsEntry != nil && modEntry != nil && installModules(nfsEntry.v) {
		// LAVA's extract-modules: the modules unpacked over the nfsrootfs.
		p, good := im.withModules(*modEntry, imgs["nfsrootfs"], imgs["modules"], dl)
		if !good {
			return a, false
		}
		imgs["nfsrootfs"] = p
	}
	files := map[string]string{}
	for k, v := range imgs {
		if !slices.Contains([]string{"kernel", "initrd", "dtb", "rootfs"}, k) {
			files[k] = v
		}
	}
	switch {
	case len(imgs) == 1 && imgs["rootfs"] != "":
		a.Image = imgs["rootfs"]
	case imgs["kernel"] != "" || imgs["rootfs"] != "" || len(files) > 0:
		a.Images = &jobs.Images{Kernel: imgs["kernel"], Initrd: imgs["initrd"], DTB: imgs["dtb"], Rootfs: imgs["rootfs"]}
		if len(files) > 0 {
			a.Images.Files = files
		}
	case len(imgs) > 0:
		im.errorf(e.line, e.path, "initrd, ramdisk and dtb images need a kernel or a rootfs image")
		return a, false
	}
	return a, true
}

// installModules reads an image's install_modules (LAVA's default: true).
func installModules(n *yaml.Node) bool {
	n = deref(n)
	for i := 0; n != nil && n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "install_modules" {
			v := deref(n.Content[i+1])
			return v == nil || v.Value != "false" && v.Value != "False" && v.Value != "no"
		}
	}
	return true
}

// withModules gives the job path of the nfsrootfs (job path rootfs) with
// the modules (job path modules) unpacked over it, in the download cache.
func (im *importer) withModules(e entry, rootfs, modules string, dl *Downloads) (string, bool) {
	if dl == nil {
		im.errorf(e.line, e.path, "no download cache to unpack the modules into the nfsrootfs in")
		return "", false
	}
	real := func(p string) string {
		rel, err := filepath.Rel(filepath.Dir(im.file), p)
		if err != nil {
			return p
		}
		return filepath.Join(im.opts.Images, rel)
	}
	p, err := dl.WithModules(context.Background(), real(rootfs), real(modules))
	if err != nil {
		im.errorf(e.line, e.path, "%v", err)
		return "", false
	}
	cached, err := filepath.Rel(im.opts.Images, p)
	if err != nil || !filepath.IsLocal(cached) {
		im.errorf(e.line, e.path, "the download cache %s is not under the images root %s", dl.Dir, im.opts.Images)
		return "", false
	}
	return im.imagePath(cached), true
}

// stagedName is the form of the names of images staged by name
// (jobs.Images.Files); fixedImageNames are taken.
var (
	stagedName      = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
	commandSetName  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	fixedImageNames = []string{"kernel", "initrd", "rootfs", "dtb", "ramdisk", "image", "server_ip", "board", "files"}
)

// bootLAVA reads a LAVA boot action. troupe boots a board by its lab
// entry (power cycle; u-boot commands and login from the lab file, the
// LAVA device dictionary's part), so method, commands, type, media and
// prompts are checked and the board's own settings used.
func (im *importer) bootLAVA(e entry) (jobs.Action, bool) {
	a := im.newAction(jobs.Boot, e.line, jobs.DefaultBootTimeout)
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return a, false
	}
	ok = true
	var method, params *entry
	for _, k := range m.entries {
		switch {
		case im.common(k, &a), im.actionKey(k, &a, "boot"):
		case k.key == "method":
			if s, good := im.str(k.v, k.path); good {
				switch s {
				case "docker":
					// The board of device type docker boots as any other.
				case "lxc":
					im.unsupported(k, whyLXC)
					ok = false
				case "ssh":
					method = &k
				case "fastboot":
					im.unsupported(k, "not supported: troupe boots boards by power cycle, u-boot or QEMU; fastboot is not one of them")
					ok = false
				}
			}
		case k.key == "prompts":
			// The shell prompts of the booted image, regular expressions
			// as LAVA's pexpect reads them: any one of them is the prompt.
			// A board standing in for the device type keeps its own.
			var ps []string
			if isString(k.v) {
				ps = []string{k.v.Value}
			} else if ps, ok = im.strings(k); !ok {
				ok = false
				break
			}
			for i, p := range ps {
				if _, err := regexp.Compile(p); err != nil {
					im.errorf(k.line, fmt.Sprintf("%s[%d]", k.path, i), "not a regular expression troupe reads (Go's RE2 syntax): %v", err)
					ok = false
				}
			}
			if ok && len(ps) > 0 {
				a.Login.ShellPrompt = "(?:" + strings.Join(ps, ")|(?:") + ")"
			}
		case k.key == "commands":
			// A named set (nfs, ramdisk, tftp): the board's lab entry's
			// command set of that name ([board.boot.command_sets], the
			// LAVA device dictionary's part). A list: the job's own
			// commands, which troupe does not type.
			if isString(k.v) {
				if !commandSetName.MatchString(k.v.Value) {
					im.errorf(k.line, k.path, "%q is not a command set name (letters, digits, '_' and '-')", k.v.Value)
					ok = false
				} else {
					a.Commands = k.v.Value
				}
			} else if cmds, good := im.commandList(k); good {
				// Typed at the u-boot prompt instead of the board's, LAVA's
				// {PLACEHOLDERS} as troupe's {placeholders}.
				for _, c := range cmds {
					a.BootCommands = append(a.BootCommands, lavaTemplate(c))
				}
			} else {
				ok = false
			}
		case k.key == "parameters":
			params = &k
		case k.key == "type", k.key == "media", k.key == "bootloader", k.key == "ignore_kernel_messages", k.key == "transfer_overlay", k.key == "soft_reboot", k.key == "expect_shell":
			// type picks u-boot's boot command and media the storage; both are
			// the board's business in troupe (its lab entry).
		case k.key == "auto_login":
			im.autoLogin(k, &a)
		case k.key == "command":
			// docker: the container's command (its shell); the board's
			// own shell stands for it.
			im.str(k.v, k.path)
		default:
			im.unsupported(k, "not a boot key troupe reads; it reads method, prompts, auto_login, commands, type, media, parameters, role, timeout, failure_retry and protocols")
			ok = false
		}
	}
	if method != nil {
		if !im.guestAction(*method, a.Roles, "boot method: ssh") {
			return a, false
		}
		if params != nil {
			a.Address = im.sshParameters(*params)
		}
	}
	return a, ok
}

// sshParameters reads the parameters of a boot method ssh: hostID (the
// message of the host that carries its address) and host_key (the key of
// the address in it).
func (im *importer) sshParameters(e entry) *jobs.Address {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return nil
	}
	ad := &jobs.Address{}
	for _, k := range m.entries {
		switch k.key {
		case "hostID":
			ad.Message, _ = im.str(k.v, k.path)
		case "host_key":
			ad.Key, _ = im.str(k.v, k.path)
		default:
			im.unsupported(k, "not a parameter of boot method ssh; LAVA's are hostID and host_key")
		}
	}
	if ad.Message == "" && ad.Key == "" {
		return nil // the host board's own address
	}
	im.required(m, "hostID", "host_key")
	if ad.Message == "" || ad.Key == "" {
		return nil
	}
	return ad
}

// guestAction checks that every role of an action that reaches its
// board over ssh (what names it) is a guest role, reporting whether all
// are.
func (im *importer) guestAction(e entry, roles []string, what string) bool {
	for _, r := range roles {
		if !im.guests[r] {
			im.errorf(e.line, e.path, "%s is for guest roles (connection: ssh, host_role); role %s has a board of its own", what, r)
			return false
		}
	}
	return true
}

// autoLogin reads a boot's auto_login: its prompts, user and password
// replace the board's login settings for this boot (jobs.Action.Login).
func (im *importer) autoLogin(e entry, a *jobs.Action) {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return
	}
	for _, k := range m.entries {
		switch k.key {
		case "login_prompt", "password_prompt":
			s, good := im.str(k.v, k.path)
			if !good {
				continue
			}
			re := regexp.QuoteMeta(s) // LAVA matches its prompts as text
			if k.key == "login_prompt" {
				a.Login.Prompt = re
			} else {
				a.Login.PasswordPrompt = re
			}
		case "username":
			a.Login.User, _ = im.str(k.v, k.path)
		case "password":
			// Any scalar: a password of digits reads as a number. Never quoted in errors.
			if k.v.Kind == yaml.ScalarNode && k.v.ShortTag() != "!!null" {
				a.Login.Password = k.v.Value
			} else {
				im.errorf(k.line, k.path, "must be a text value")
			}
		case "login_commands":
			// Typed at the shell prompt after the login, before troupe's
			// test shell sets itself up.
			if cmds, good := im.commandList(k); good {
				a.Login.Commands = cmds
			}
		default:
			im.unsupported(k, "not an auto_login key; LAVA's are login_prompt, username, password_prompt, password and login_commands")
		}
	}
}

// commandList reads a list of commands typed on a board's console:
// jobs.MaxBootCommands at most, one line of jobs.MaxBootCommandLen bytes
// each.
func (im *importer) commandList(k entry) ([]string, bool) {
	cmds, ok := im.strings(k)
	if !ok {
		return nil, false
	}
	if len(cmds) > jobs.MaxBootCommands {
		im.errorf(k.line, k.path, "at most %d commands (got %d)", jobs.MaxBootCommands, len(cmds))
		return nil, false
	}
	for i, c := range cmds {
		switch {
		case len(c) > jobs.MaxBootCommandLen:
			im.errorf(k.line, fmt.Sprintf("%s[%d]", k.path, i), "at most %d bytes (got %d)", jobs.MaxBootCommandLen, len(c))
			return nil, false
		case strings.ContainsAny(c, "\r\n"):
			im.errorf(k.line, fmt.Sprintf("%s[%d]", k.path, i), "one line each: the console gets one command a line")
			return nil, false
		}
	}
	return cmds, true
}

// lavaPlaceholder is a placeholder of LAVA's u-boot commands ({SERVER_IP},
// {KERNEL_ADDR}, ...).
var lavaPlaceholder = regexp.MustCompile(`\{[A-Z][A-Z0-9_]*\}`)

// lavaTemplate turns a LAVA boot command into a troupe template (see
// boot.Fill): LAVA's {NAME} placeholders become {name} (the names a lab
// entry's vars and the deploy give: {server_ip}, {kernel}, {ramdisk},
// {dtb}, {kernel_addr}, ...); every other brace is literal ("${loadaddr}").
func lavaTemplate(c string) string {
	var b strings.Builder
	last := 0
	for _, m := range lavaPlaceholder.FindAllStringIndex(c, -1) {
		b.WriteString(escapeBraces(c[last:m[0]]))
		b.WriteString(strings.ToLower(c[m[0]:m[1]]))
		last = m[1]
	}
	b.WriteString(escapeBraces(c[last:]))
	return b.String()
}

func escapeBraces(s string) string {
	return strings.NewReplacer("{", "{{", "}", "}}").Replace(s)
}

// guestRole reads a role's ssh guest keys (connection: ssh, host_role,
// expect_role, request: lava-start) into r.Host, reporting whether the
// role is a guest. LAVA's guest waits for the lava_start message of its
// expect_role and logs in over ssh to its host_role's board; troupe's
// guest (jobs.Role.Host) does both with the one host role.
func (im *importer) guestRole(m *mapping, r *jobs.Role) bool {
	conn, hasConn := m.get("connection")
	if hasConn {
		if s, ok := im.str(conn.v, conn.path); !ok || s == "serial" {
			hasConn = false
		} else if s != "ssh" {
			im.errorf(conn.line, conn.path, "%q is not a connection troupe makes (serial; ssh for a guest role)", s)
			return false
		}
	}
	host, hasHost := m.get("host_role")
	if !hasConn {
		for _, k := range []string{"host_role", "expect_role", "request"} {
			if e, ok := m.get(k); ok {
				im.unsupported(e, "only a guest role (connection: ssh) has "+k)
			}
		}
		return false
	}
	if !hasHost {
		im.errorf(conn.line, m.sub("host_role"), "is required: a guest role (connection: ssh) names the role whose board it logs in to")
		return false
	}
	h, ok := im.str(host.v, host.path)
	if !ok {
		return false
	}
	if e, ok := m.get("expect_role"); ok {
		if s, good := im.str(e.v, e.path); good && s != h {
			im.unsupported(e, fmt.Sprintf("not supported: troupe's guest waits for its host role (%s) to send lava_start; expect_role must be the host_role", h))
			return false
		}
	}
	req, hasReq := m.get("request")
	if !hasReq {
		im.errorf(conn.line, m.sub("request"), "is required: troupe starts a guest role once its host role has sent lava_start: give request: lava-start and expect_role: %s, and lava-send lava_start in the host's test", h)
		return false
	}
	if s, good := im.str(req.v, req.path); good && s != "lava-start" {
		im.errorf(req.line, req.path, "%q is not a request of a guest role troupe makes (lava-start)", s)
		return false
	}
	r.Host = h // the LAVA name: roles maps it
	im.guests[r.Name] = true
	return true
}

// dockerImage reads the image of a deploy to: docker ({name, local} or
// the name alone). troupe pulls no containers: the role runs on a board
// of its lab of the role's device type (docker), as said once.
func (im *importer) dockerImage(e entry) {
	name := ""
	if isString(e.v) {
		name = e.v.Value
	} else if m, ok := im.mapping(e.v, e.path); ok {
		for _, k := range m.entries {
			switch k.key {
			case "name":
				name, _ = im.str(k.v, k.path)
			case "local":
				im.boolean(k)
			default:
				im.unsupported(k, "not a key of a docker image; LAVA's are name and local")
			}
		}
		im.required(m, "name")
	}
	if name != "" {
		im.warnf(e.line, e.path, "the docker image %s is not pulled: troupe runs the role on a board of its lab for the role's device type (the built-in sim lab stands one in: a sandboxed shell)", name)
	}
}
