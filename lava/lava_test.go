package lava_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lava"
)

func TestLoadIperfMultinode(t *testing.T) {
	const file = "testdata/iperf-multinode.yaml"
	j, err := lava.Load(file)
	require.NoError(t, err)
	all := []string{"server", "client"}
	want := &jobs.Job{
		Name:             "iperf-multinode-2-clients",
		Timeout:          30 * time.Minute,
		Priority:         50,
		MultinodeTimeout: 6 * time.Minute,
		File:             file,
		Roles: []jobs.Role{
			{Name: "client", DeviceType: "qemu", Count: 2, Tags: []string{"usb", "fast"}, Timeout: 6 * time.Minute},
			{Name: "server", DeviceType: "qemu", Count: 1, Essential: true, Timeout: 10 * time.Minute},
		},
		Actions: []jobs.Action{
			{Index: 0, Type: jobs.Deploy, Roles: all, Image: "testdata/images/debian-iperf.img", Timeout: 8 * time.Minute, Line: 29},
			{Index: 1, Type: jobs.Boot, Roles: all, Timeout: 2*time.Minute + 30*time.Second, Line: 38,
				Login: jobs.Login{ShellPrompt: "(?:root@debian:~#)"}}, // prompts: the image's shell prompt
			{Index: 2, Type: jobs.Test, Roles: []string{"server"}, Name: "iperf-server", Timeout: 15 * time.Minute, Line: 48,
				Run: "export TESTRUN_ID='iperf-server'\nexport DURATION='10'\nset -e\n" +
					"iperf3 -s -D\n" +
					"lava-send server-ready ip=$(hostname -I | cut -d' ' -f1)\n" +
					"lava-wait-all client-done client\n" +
					"lava-test-case iperf-server --result pass\n" +
					"lava-sync finished"},
			{Index: 3, Type: jobs.Test, Roles: []string{"client"}, Name: "iperf-client", Timeout: 5 * time.Minute, Line: 69,
				Run: "export TESTRUN_ID='iperf-client'\nexport DURATION='30'\n" +
					"export MESSAGE='it'\\''s done'\nset -e\n" +
					"lava-wait server-ready\n" +
					"SERVER=$(grep ip= ${LAVA_MULTI_NODE_CACHE:-/tmp/lava_multi_node_cache.txt} | cut -d= -f2)\n" +
					`lava-test-case iperf-run --shell iperf3 -c "$SERVER" -t "$DURATION"` + "\n" +
					"lava-send client-done\n" +
					"lava-sync finished"},
			{Index: 4, Type: jobs.Test, Roles: []string{"client"}, Name: "smoke-tests", Timeout: 5 * time.Minute, Line: 88,
				Run: "export TESTRUN_ID='smoke-tests'\nset -e\nuname -a\nlava-test-case kernel --shell test -d /proc"},
		},
	}
	assert.Equal(t, want, j)
	roundTrip(t, j)
}

// roundTrip checks that j encodes to a troupe job file that jobs.Parse
// reads back as j (but for the lines of the actions).
func roundTrip(t testing.TB, j *jobs.Job) {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, j.Encode(&buf))
	back, err := jobs.Parse(j.File, buf.Bytes())
	require.NoError(t, err, "encoded:\n%s", buf.String())
	require.Len(t, back.Actions, len(j.Actions))
	for i := range back.Actions {
		back.Actions[i].Line = j.Actions[i].Line
	}
	require.Equal(t, j, back, "encoded:\n%s", buf.String())
}

func mustImport(t *testing.T, src string) *jobs.Job {
	t.Helper()
	j, err := lava.Import("job.yaml", []byte(src))
	require.NoError(t, err)
	roundTrip(t, j)
	return j
}

func TestSingleNode(t *testing.T) {
	j := mustImport(t, `
job_name: smoke
device_type: beaglebone-black
tags: [lab-a]
timeouts:
  job: {hours: 1}
actions:
- deploy:
    to: tftp
    images:
      rootfs: {url: "images/bbb.img"}
- boot: {method: u-boot, prompts: ['/ # ']}
- test:
    definitions:
    - from: inline
      name: smoke
      path: inline/smoke.yaml
      repository:
        metadata: {format: Lava-Test Test Definition 1.0, name: smoke}
        run: {steps: [lava-test-case uname --shell uname -a]}
`)
	assert.Equal(t, "smoke", j.Name)
	assert.Equal(t, time.Hour, j.Timeout)
	assert.Equal(t, []jobs.Role{{Name: "node", DeviceType: "beaglebone-black", Count: 1, Tags: []string{"lab-a"}, Timeout: jobs.DefaultMultinodeTimeout}}, j.Roles)
	require.Len(t, j.Actions, 3)
	for _, a := range j.Actions {
		assert.Equal(t, []string{"node"}, a.Roles)
	}
	assert.Equal(t, "images/bbb.img", j.Actions[0].Image)
	assert.Equal(t, jobs.DefaultDeployTimeout, j.Actions[0].Timeout)
	assert.Equal(t, jobs.DefaultBootTimeout, j.Actions[1].Timeout)
	assert.Equal(t, time.Duration(0), j.Actions[2].Timeout)
	assert.Equal(t, "export TESTRUN_ID='smoke'\nset -e\nlava-test-case uname --shell uname -a", j.Actions[2].Run, "LAVA's run script stops at the first failing step")
}

// job is a minimal valid multinode job; %s is replaced by extra top-level keys.
func job(extra string) string {
	return `job_name: t
protocols:
  lava-multinode:
    roles:
      a: {device_type: sim}
` + extra + `
actions:
- boot: {role: [a]}
`
}

// guestJob is a job of a host role and a guest role given as guest,
// with its host's boot and the actions extra.
func guestJob(guest, extra string) string {
	return `job_name: t
protocols:
  lava-multinode:
    roles:
      guest: ` + guest + `
      host: {device_type: sim}
actions:
- boot: {role: [host]}
` + extra
}

func TestDurations(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want time.Duration
	}{
		{"{seconds: 90}", 90 * time.Second},
		{"{minutes: 30}", 30 * time.Minute},
		{"{hours: 1}", time.Hour},
		{"{days: 1}", 24 * time.Hour},
		{"{hours: 1, minutes: 2, seconds: 3}", time.Hour + 2*time.Minute + 3*time.Second},
		{"{minutes: 0, seconds: 1}", time.Second},
		{"{minutes: 0x10}", 16 * time.Minute},
	} {
		t.Run(tc.src, func(t *testing.T) {
			j := mustImport(t, job("timeouts: {job: "+tc.src+", action: "+tc.src+"}"))
			assert.Equal(t, tc.want, j.Timeout)
			assert.Equal(t, tc.want, j.Actions[0].Timeout)
		})
	}
}

func TestActionTimeoutDefault(t *testing.T) {
	j := mustImport(t, job("timeouts: {action: {minutes: 3}}"))
	assert.Equal(t, 3*time.Minute, j.Actions[0].Timeout)
	assert.Equal(t, jobs.DefaultTimeout, j.Timeout)
	j = mustImport(t, job(""))
	assert.Equal(t, jobs.DefaultBootTimeout, j.Actions[0].Timeout)
}

func TestPriority(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want int
	}{
		{"high", 75}, {"medium", 50}, {"low", 25}, {"0", 0}, {"100", 100}, {"42", 42},
	} {
		t.Run(tc.src, func(t *testing.T) {
			assert.Equal(t, tc.want, mustImport(t, job("priority: "+tc.src)).Priority)
		})
	}
	assert.Equal(t, jobs.DefaultPriority, mustImport(t, job("")).Priority)
}

func TestRoleWithDash(t *testing.T) {
	j := mustImport(t, `
job_name: dashes
protocols:
  lava-multinode:
    timeout: {minutes: 2}
    roles:
      iperf-server: {device_type: qemu, essential: yes}
      iperf-client: {device_type: qemu, count: 3, timeout: {minutes: 1}}
actions:
- boot: {role: [iperf-client, iperf-server]}
- test:
    role: [iperf-client]
    definitions:
    - from: inline
      name: c
      repository: {run: {steps: [lava-wait-all ready iperf-server]}}
`)
	assert.Equal(t, 2*time.Minute, j.MultinodeTimeout)
	assert.Equal(t, []jobs.Role{
		{Name: "iperf_client", DeviceType: "qemu", Count: 3, Timeout: time.Minute},
		{Name: "iperf_server", DeviceType: "qemu", Count: 1, Essential: true, Timeout: 2 * time.Minute},
	}, j.Roles)
	assert.Equal(t, []string{"iperf_client", "iperf_server"}, j.Actions[0].Roles)
	assert.Equal(t, []string{"iperf_client"}, j.Actions[1].Roles)
	assert.Equal(t, "export TESTRUN_ID='c'\nset -e\nlava-wait-all ready iperf-server", j.Actions[1].Run, "steps are kept verbatim")
}

func TestNames(t *testing.T) {
	j := mustImport(t, `
job_name: "  Daily: kernel/CI #42 "
device_type: qemu
actions:
- boot: {}
- test:
    definitions:
    - {from: inline, name: smoke, repository: {run: {steps: [a]}}}
    - {from: inline, name: smoke, repository: {run: {steps: [b]}}}
    - {from: inline, name: smoke-2, repository: {run: {steps: [c]}}}
- test:
    definitions:
    - {from: inline, name: "smoke test!", repository: {run: {steps: [d]}}}
    - {from: inline, name: smoke, repository: {run: {steps: [e]}}}
`)
	assert.Equal(t, "Daily-kernel-CI-42", j.Name)
	var names []string
	for _, a := range j.Actions[1:] {
		names = append(names, a.Name)
	}
	assert.Equal(t, []string{"smoke", "smoke-2", "smoke-2-2", "smoke-test", "smoke-3"}, names)
}

func TestParameters(t *testing.T) {
	j := mustImport(t, `
job_name: params
device_type: qemu
actions:
- boot: {}
- test:
    definitions:
    - from: inline
      name: p
      parameters: {B: "from job", C: 3}
      repository:
        params: {A: 1, B: default, EMPTY: }
        run:
          steps:
          - echo "$A $B $C"
`)
	assert.Equal(t, "export TESTRUN_ID='p'\nexport A='1'\nexport B='from job'\nexport EMPTY=''\nexport C='3'\nset -e\necho \"$A $B $C\"", j.Actions[1].Run)
}

func TestImages(t *testing.T) {
	for _, tc := range []struct{ file, url, want string }{
		{"job.yaml", "rootfs.img", "rootfs.img"},
		{"jobs/job.yaml", "img/rootfs.img", "jobs/img/rootfs.img"},
		{"/lab/jobs/job.yaml", "img/my rootfs.img", "/lab/jobs/img/my rootfs.img"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			src := "job_name: i\ndevice_type: qemu\nactions:\n- deploy: {images: {rootfs: {url: '" + tc.url + "'}}}\n"
			j, err := lava.Import(tc.file, []byte(src))
			require.NoError(t, err)
			assert.Equal(t, tc.want, j.Actions[0].Image)
			roundTrip(t, j)
		})
	}
}

// TestImagesOutsideRefused: images resolve under the images root only
// (the job file's directory, or the server's): file:// URLs, absolute
// paths and ".." are refused.
func TestImagesOutsideRefused(t *testing.T) {
	for _, url := range []string{"../img/rootfs.img", "file:///srv/rootfs.img", "file://localhost/srv/my%20rootfs.img", "/srv/rootfs.img", "img/../../x"} {
		t.Run(url, func(t *testing.T) {
			src := "job_name: i\ndevice_type: qemu\nactions:\n- deploy: {images: {rootfs: {url: '" + url + "'}}}\n"
			_, err := lava.Import("/lab/jobs/job.yaml", []byte(src))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "actions[0].deploy.images.rootfs.url: ")
			assert.Contains(t, err.Error(), "place the image under the images root")
		})
	}
}

func TestIgnored(t *testing.T) {
	assert.Equal(t, []string{"visibility", "metadata", "notify"}, lava.Ignored)
	a := mustImport(t, job(""))
	b := mustImport(t, job(`visibility: {group: [lab]}
metadata: {anything: [goes, {here: 1}]}
notify:
  criteria: {status: finished}
  recipients:
  - to: {method: email, email: someone@example.com}`))
	b.Actions[0].Line = a.Actions[0].Line
	assert.Equal(t, a, b)
}

// unsupported are jobs that cannot be imported, with (part of) the error.
var unsupported = []struct {
	name, src, want string
}{
	{"secret name", job("secrets: {A-B: hunter2}"), "job.yaml:6: secrets.A-B: a secret's name must be a shell variable name"},
	{"secret value", job("secrets: {A: [hunter2]}"), "job.yaml:6: secrets.A: must be a text value"},
	{"context value", job("context: {a: {b: c}}"), "job.yaml:6: context.a: must be a value or a list of values (got mapping)"},
	{"timeouts.connection unit", job("timeouts: {connection: {weeks: 2}}"), "job.yaml:6: timeouts.connection.weeks: unknown unit"},
	{"boot commands lines", strings.Replace(job(""), "- boot: {role: [a]}", "- boot: {role: [a], commands: [\"setenv a 1\\nreset\"]}", 1), "job.yaml:8: actions[0].boot.commands[0]: one line each"},
	{"boot commands many", strings.Replace(job(""), "- boot: {role: [a]}", "- boot: {role: [a], commands: ["+strings.Repeat("x, ", jobs.MaxBootCommands)+"x]}", 1), "job.yaml:8: actions[0].boot.commands: at most 64 commands (got 65)"},
	{"prompts regexp", strings.Replace(job(""), "- boot: {role: [a]}", "- boot: {role: [a], prompts: ['# ', 'a(b']}", 1), "job.yaml:8: actions[0].boot.prompts[1]: not a regular expression troupe reads"},
	{"login commands long", strings.Replace(job(""), "- boot: {role: [a]}", "- boot: {role: [a], auto_login: {login_commands: ["+strings.Repeat("x", jobs.MaxBootCommandLen+1)+"]}}", 1), "actions[0].boot.auto_login.login_commands[0]: at most 1024 bytes (got 1025)"},
	{"duration unit", job("timeouts: {job: {weeks: 1}}"), "job.yaml:6: timeouts.job.weeks: unknown unit"},
	{"duration zero", job("timeouts: {job: {minutes: 0}}"), "job.yaml:6: timeouts.job: must be > 0"},
	{"duration negative", job("timeouts: {job: {minutes: -1}}"), "job.yaml:6: timeouts.job.minutes: must not be negative"},
	{"duration string", job("timeouts: {job: 30m}"), `job.yaml:6: timeouts.job: must be a mapping (got string "30m")`},
	{"duration huge", job("timeouts: {job: {days: 99999999}}"), "job.yaml:6: timeouts.job.days: too long"},
	{"priority word", job("priority: urgent"), `job.yaml:6: priority: must be high, medium, low or an integer 0..100 (got "urgent")`},
	{"priority range", job("priority: 101"), "job.yaml:6: priority: must be between 0 and 100 (got 101)"},
	{"request", `job_name: t
protocols:
  lava-multinode:
    roles:
      host: {device_type: qemu}
      guest: {device_type: qemu, request: lava-start, expect_role: host}
actions:
- boot: {}
`, "job.yaml:6: protocols.lava-multinode.roles.guest.request: only a guest role (connection: ssh) has request"},
	{"lxc protocol", `job_name: t
device_type: qemu
protocols:
  lava-lxc: {name: x}
actions:
- boot: {}
`, "job.yaml:4: protocols.lava-lxc: not supported: troupe imports only the lava-multinode protocol"},
	{"role name", `job_name: t
protocols:
  lava-multinode:
    roles:
      "a b": {device_type: qemu}
actions:
- boot: {}
`, `job.yaml:5: protocols.lava-multinode.roles.a b: role name "a b" may contain only letters, digits, '_' and '-'`},
	{"role clash", `job_name: t
protocols:
  lava-multinode:
    roles:
      a-b: {device_type: qemu}
      a_b: {device_type: qemu}
actions:
- boot: {}
`, `job.yaml:6: protocols.lava-multinode.roles.a_b: roles "a-b" and "a_b" would both be called "a_b"`},
	{"count", `job_name: t
protocols:
  lava-multinode:
    roles:
      a: {device_type: qemu, count: 0}
actions:
- boot: {}
`, "job.yaml:5: protocols.lava-multinode.roles.a.count: must be between 1 and 10000 (got 0)"},
	{"device_type missing", `job_name: t
protocols:
  lava-multinode:
    roles:
      a: {count: 2}
actions:
- boot: {}
`, "job.yaml:5: protocols.lava-multinode.roles.a.device_type: is required"},
	{"no roles", "job_name: t\nactions:\n- boot: {}\n", "job.yaml:1: device_type: is required"},
	{"multinode device_type", job("device_type: qemu"), "job.yaml:6: device_type: a MultiNode job has no top-level device_type"},
	{"job_name missing", "device_type: qemu\nactions:\n- boot: {}\n", "job.yaml:1: job_name: is required"},
	{"job_name punctuation", "job_name: '!!!'\ndevice_type: qemu\nactions:\n- boot: {}\n", `job.yaml:1: job_name: "!!!" has no letters or digits`},
	{"actions missing", "job_name: t\ndevice_type: qemu\n", "job.yaml:1: actions: is required"},
	{"actions empty", "job_name: t\ndevice_type: qemu\nactions: []\n", "job.yaml:3: actions: at least one action is required"},
	{"command action", job("") + "- command: {name: pdu_reboot}\n", `job.yaml:9: actions[1].command: command actions run commands on the LAVA worker; troupe runs nothing on its host for a job`},
	{"docker deploy", job("") + "- deploy: {to: docker, image: debian}\n", `job.yaml:9: actions[1].deploy.to: not supported: deploy to: docker is for roles of device_type docker`},
	{"docker test shell", job("") + "- test: {docker: {image: adb}, definitions: []}\n", `job.yaml:9: actions[1].test.docker: ` + lava.WhyDockerTest},
	{"lxc boot", job("") + "- boot: {method: lxc}\n", `job.yaml:9: actions[1].boot.method: not supported: LXC was dropped by LAVA itself`},
	{"ssh boot of a board role", job("") + "- boot: {method: ssh, connection: ssh}\n", `job.yaml:9: actions[1].boot.method: boot method: ssh is for guest roles (connection: ssh, host_role); role a has a board of its own`},
	{"ssh deploy of a board role", job("") + "- deploy: {to: ssh}\n", `job.yaml:9: actions[1].deploy.to: deploy to: ssh is for guest roles (connection: ssh, host_role); role a has a board of its own`},
	{"guest without request", guestJob("{connection: ssh, host_role: host, expect_role: host}", ""), `job.yaml:5: protocols.lava-multinode.roles.guest.request: is required: troupe starts a guest role once its host role has sent lava_start`},
	{"guest without host_role", guestJob("{connection: ssh, request: lava-start}", ""), `job.yaml:5: protocols.lava-multinode.roles.guest.host_role: is required`},
	{"guest expect_role", guestJob("{connection: ssh, host_role: host, expect_role: other, request: lava-start}", ""), `job.yaml:5: protocols.lava-multinode.roles.guest.expect_role: not supported: troupe's guest waits for its host role (host) to send lava_start; expect_role must be the host_role`},
	{"guest host undefined", guestJob("{connection: ssh, host_role: nohost, request: lava-start}", ""), `protocols.lava-multinode.roles.guest.host_role: undefined role "nohost"`},
	{"guest host is a guest", guestJob("{connection: ssh, host_role: guest2, request: lava-start}\n      guest2: {connection: ssh, host_role: host, request: lava-start}", ""), `host: role "guest2" is a guest itself`},
	{"guest connection", guestJob("{connection: telnet, host_role: host, request: lava-start}", ""), `roles.guest.connection: "telnet" is not a connection troupe makes`},
	{"guest request", guestJob("{connection: ssh, host_role: host, request: lava-wait}", ""), `roles.guest.request: "lava-wait" is not a request of a guest role troupe makes (lava-start)`},
	{"ssh parameters", guestJob("{connection: ssh, host_role: host, request: lava-start}", "- boot: {role: [guest], method: ssh, parameters: {hostID: ipv4}}\n"), `actions[1].boot.parameters.host_key: is required`},
	{"guest sub-job", "job_name: t\nconnection: ssh\nhost_role: host\nprotocols:\n  lava-multinode: {role: guest, roles: {black02: host}, request: lava-start, expect_role: host}\nactions:\n- boot: {method: ssh}\n", "job.yaml:2: connection: " + lava.WhyGuestSubJob},
	{"namespace", job("") + "- boot: {namespace: target}\n", `job.yaml:9: actions[1].boot.namespace: not supported: troupe runs one deploy/boot/test sequence per board`},
	{"request kind", job("") + "- boot:\n    protocols: {lava-multinode: [{action: x, request: lava-start, messageID: a}]}\n", `actions[1].boot.protocols.lava-multinode[0].request: "lava-start" is not a MultiNode request troupe makes`},
	{"bad fixup", job("") + "- test:\n    definitions:\n    - from: inline\n      name: x\n      repository:\n        run: {steps: [a]}\n        parse: {pattern: '(?P<test_case_id>\\S+) (?P<result>\\S+)', fixupdict: {OK: good}}\n", `parse.fixupdict maps "OK" to "good"`},
	{"two keys", job("") + "- boot: {}\n  test: {}\n", "job.yaml:9: actions[1]: an action must be a mapping with one key"},
	{"undefined role", job("") + "- boot: {role: [b]}\n", `job.yaml:9: actions[1].boot.role: undefined role "b"`},
	{"duplicate role", job("") + "- boot: {role: [a, a]}\n", `job.yaml:9: actions[1].boot.role: duplicate role "a"`},
	{"deploy http", job("") + "- deploy:\n    images:\n      rootfs:\n        url: https://images.example.com/rootfs.img\n", `job.yaml:12: actions[1].deploy.images.rootfs.url: "https://images.example.com/rootfs.img" needs the network, and fetching is off here`},
	{"deploy other host", job("") + "- deploy: {images: {rootfs: {url: 'file://nas/rootfs.img'}}}\n", `job.yaml:9: actions[1].deploy.images.rootfs.url: "file://nas/rootfs.img": file:// URLs are not accepted; place the image under the images root`},
	{"deploy ftp", job("") + "- deploy: {images: {rootfs: {url: 'ftp://nas/rootfs.img'}}}\n", `job.yaml:9: actions[1].deploy.images.rootfs.url: "ftp://nas/rootfs.img": troupe fetches images over http(s) only`},
	{"deploy odd image", job("") + "- deploy:\n    images:\n      9boot: {url: u-boot.bin}\n", "job.yaml:11: actions[1].deploy.images.9boot: not an image name troupe can stage"},
	{"deploy compression", job("") + "- deploy:\n    images:\n      rootfs:\n        url: rootfs.img.lz\n        compression: lzip\n", `job.yaml:13: actions[1].deploy.images.rootfs.compression: "lzip" is not a compression troupe decompresses (gz, bz2, xz, zstd)`},
	{"initrd without kernel", job("") + "- deploy:\n    images:\n      initrd: {url: initrd.img}\n", "job.yaml:9: actions[1].deploy: initrd, ramdisk and dtb images need a kernel or a rootfs image"},
	{"deploy no url", job("") + "- deploy: {images: {rootfs: {}}}\n", "job.yaml:9: actions[1].deploy.images.rootfs.url: is required"},
	{"from git", job("") + `- test:
    definitions:
    - repository: https://git.example.com/tests.git
      from: git
      path: smoke.yaml
      name: smoke
`, `job.yaml:11: actions[1].test.definitions[0].repository: repository "https://git.example.com/tests.git" needs the network, and fetching is off here: map it to a local mirror (--lava-mirror URL=DIR)`},
	{"from url", job("") + "- test:\n    definitions:\n    - {from: url, repository: 'https://x/t.yaml', name: t, path: t.yaml}\n", `job.yaml:11: actions[1].test.definitions[0].from: "url" is not supported; troupe imports from: inline and from: git test definitions`},
	{"from missing", job("") + "- test:\n    definitions:\n    - {name: x, repository: {run: {steps: [a]}}}\n", "job.yaml:11: actions[1].test.definitions[0].from: is required"},
	{"remote repository", job("") + "- test:\n    definitions:\n    - {from: inline, name: x, repository: https://example.com/t.yaml}\n", `job.yaml:11: actions[1].test.definitions[0].repository: a remote repository needs the network`},
	{"lava-signal", job("") + "- test:\n    definitions:\n    - from: inline\n      name: x\n      lava-signal: kmsg\n      repository: {run: {steps: [a]}}\n", "job.yaml:13: actions[1].test.definitions[0].lava-signal: not supported"},
	{"install network", job("") + "- test:\n    definitions:\n    - from: inline\n      name: x\n      repository:\n        install: {git-repos: [https://x/y.git]}\n        run: {steps: [a]}\n", "job.yaml:14: actions[1].test.definitions[0].repository.install.git-repos: not supported: troupe boards install nothing from the network"},
	{"parse groups", job("") + "- test:\n    definitions:\n    - from: inline\n      name: x\n      repository:\n        run: {steps: [a]}\n        parse: {pattern: '(?P<test_case_id>.*)'}\n", "job.yaml:15: actions[1].test.definitions[0].repository.parse.pattern: needs the named groups (?P<test_case_id>...) and (?P<result>...)"},
	{"steps mapping", job("") + "- test:\n    definitions:\n    - from: inline\n      name: x\n      repository:\n        run:\n          steps:\n          - echo result: ok\n", `job.yaml:16: actions[1].test.definitions[0].repository.run.steps[0]: must be a command (got mapping); quote steps that contain ": "`},
	{"steps empty", job("") + "- test:\n    definitions:\n    - {from: inline, name: x, repository: {run: {steps: []}}}\n", "job.yaml:11: actions[1].test.definitions[0].repository.run.steps: must hold at least one command"},
	{"no run", job("") + "- test:\n    definitions:\n    - {from: inline, name: x, repository: {metadata: {name: x}}}\n", "job.yaml:11: actions[1].test.definitions[0].repository.run: is required"},
	{"no name", job("") + "- test:\n    definitions:\n    - {from: inline, repository: {run: {steps: [a]}}}\n", "job.yaml:11: actions[1].test.definitions[0].name: is required"},
	{"no definitions", job("") + "- test: {role: [a]}\n", "job.yaml:9: actions[1].test.definitions: is required"},
	{"bad parameter", job("") + "- test:\n    definitions:\n    - {from: inline, name: x, parameters: {A-B: 1}, repository: {run: {steps: [a]}}}\n", `job.yaml:11: actions[1].test.definitions[0].parameters.A-B: "A-B" is not a shell variable name`},
	{"test keys", job("") + "- test:\n    repeat: 3\n    definitions:\n    - {from: inline, name: x, repository: {run: {steps: [a]}}}\n", "job.yaml:10: actions[1].test.repeat: not supported: troupe runs each action once"},
	{"unknown key", "base: {device_type: qemu}\n" + job(""), "job.yaml:1: base: not supported"},
	{"merge key", `job_name: t
protocols:
  lava-multinode:
    roles:
      a: &r {device_type: qemu}
      b:
        <<: *r
        count: 2
actions:
- boot: {}
`, "job.yaml:7: protocols.lava-multinode.roles.b.<<: YAML merge keys are not supported"},
	{"not a mapping", "- a\n- b\n", "job.yaml:1: must be a mapping (got list)"},
	{"tags", "job_name: t\ndevice_type: qemu\ntags: [a, '']\nactions:\n- boot: {}\n", "job.yaml:3: tags: tags must not be empty strings"},
}

func TestUnsupported(t *testing.T) {
	for _, tc := range unsupported {
		t.Run(tc.name, func(t *testing.T) {
			j, err := lava.Import("job.yaml", []byte(tc.src))
			require.Error(t, err, "imported: %+v", j)
			var es jobs.Errors
			require.True(t, errors.As(err, &es), "%T %v", err, err)
			for _, e := range es {
				assert.Equal(t, "job.yaml", e.File)
			}
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestSeveralErrors(t *testing.T) {
	src := `job_name: many
context: {arch: arm64}
timeouts:
  job: {minutes: 30}
  connections: {lava-test-shell: {seconds: 10}}
protocols:
  lava-multinode:
    roles:
      server: {device_type: qemu, colour: red}
      client: {device_type: qemu, count: 2}
actions:
- deploy:
    role: [server, client]
    images: {rootfs: {url: "http://example.com/rootfs.img"}}
- command: {name: pdu_reboot}
- test:
    role: [client]
    definitions:
    - {from: git, repository: "https://git.example.com/t.git", path: t.yaml, name: remote}
    - from: inline
      name: local
      repository:
        install: {deps: [iperf3], git-repos: [https://x/y.git]}
        run: {steps: [lava-sync go]}
`
	_, err := lava.Import("job.yaml", []byte(src))
	require.Error(t, err)
	var es jobs.Errors
	require.True(t, errors.As(err, &es))
	var got []string
	for _, e := range es {
		got = append(got, e.Error())
	}
	assert.Equal(t, []string{
		"job.yaml:9: protocols.lava-multinode.roles.server.colour: not supported: troupe knows no such LAVA key here and refuses it rather than ignore it: remove it",
		`job.yaml:14: actions[0].deploy.images.rootfs.url: "http://example.com/rootfs.img" needs the network, and fetching is off here: place the image under the images root and give its path relative to it, or map the URL to a local mirror (--lava-mirror URL=DIR)`,
		`job.yaml:15: actions[1].command: command actions run commands on the LAVA worker; troupe runs nothing on its host for a job: put the step in a test on a board`,
		`job.yaml:19: actions[2].test.definitions[0].repository: repository "https://git.example.com/t.git" needs the network, and fetching is off here: map it to a local mirror (--lava-mirror URL=DIR)`,
		"job.yaml:23: actions[2].test.definitions[1].repository.install.git-repos: not supported: troupe boards install nothing from the network; put what the test needs in the image",
	}, got)
	// Every error is also reachable on its own.
	var one *jobs.Error
	require.True(t, errors.As(err, &one))
	assert.Equal(t, 9, one.Line)
	assert.Equal(t, "protocols.lava-multinode.roles.server.colour", one.Key)
}

func TestMalformedYAML(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"bad indentation", "job_name: t\nactions:\n- boot: {}\n  - test: x\n", "job.yaml:2: YAML syntax error: did not find expected key"},
		{"unclosed flow", "job_name: t\ndevice_type: [qemu\nactions: []\n", "job.yaml:"},
		{"missing colon", "job_name: t\ndevice_type qemu\nactions: x\nfoo\n", "job.yaml:2: YAML syntax error: could not find expected ':'"},
		{"tab", "job_name: t\n\tdevice_type: qemu\n", "job.yaml:2: YAML syntax error: "},
		{"empty", "", "job.yaml: empty file"},
		{"comment only", "# nothing\n", "job.yaml: empty file"},
		{"two documents", job("") + "---\njob_name: u\n", "job.yaml:9: a LAVA job file holds one YAML document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := lava.Import("job.yaml", []byte(tc.src))
			require.Error(t, err)
			var es jobs.Errors
			require.True(t, errors.As(err, &es))
			require.Len(t, es, 1)
			assert.Equal(t, "job.yaml", es[0].File)
			assert.Contains(t, err.Error(), tc.want)
			if tc.name != "empty" && tc.name != "comment only" && tc.name != "unclosed flow" {
				assert.Positive(t, es[0].Line)
			}
		})
	}
}

func TestAliases(t *testing.T) {
	j := mustImport(t, `
job_name: aliases
protocols:
  lava-multinode:
    roles:
      a: {device_type: qemu}
      b: {device_type: qemu}
actions:
- boot: {role: &all [a, b], timeout: &t {minutes: 1}}
- test:
    role: *all
    timeout: *t
    definitions:
    - {from: inline, name: x, repository: {run: {steps: &steps [lava-sync x]}}}
    - {from: inline, name: y, repository: {run: {steps: *steps}}}
`)
	require.Len(t, j.Actions, 3)
	assert.Equal(t, []string{"a", "b"}, j.Actions[2].Roles)
	assert.Equal(t, time.Minute, j.Actions[2].Timeout)
	assert.Equal(t, "export TESTRUN_ID='y'\nset -e\nlava-sync x", j.Actions[2].Run)
}

func TestLoadMissing(t *testing.T) {
	_, err := lava.Load(filepath.Join(t.TempDir(), "nope.yaml"))
	require.Error(t, err)
	assert.True(t, errors.Is(err, os.ErrNotExist))
}

func TestIsLAVA(t *testing.T) {
	data, err := os.ReadFile("testdata/iperf-multinode.yaml")
	require.NoError(t, err)
	toml, err := os.ReadFile("../examples/hello-multinode.toml")
	require.NoError(t, err)
	assert.True(t, lava.IsLAVA("testdata/iperf-multinode.yaml", data))
	assert.True(t, lava.IsLAVA("job", data))
	assert.True(t, lava.IsLAVA("x.YML", nil))
	assert.True(t, lava.IsLAVA("job", []byte("protocols: {}\n")))
	assert.False(t, lava.IsLAVA("hello-multinode.toml", toml))
	assert.False(t, lava.IsLAVA("job", []byte("name: x\n")))
	assert.False(t, lava.IsLAVA("job", []byte("[not: yaml")))
	assert.False(t, lava.IsLAVA("job", nil))
}

// TestRoundTripTOML checks the example through the TOML text a user would
// save: troupe reads the same job from it.
func TestRoundTripTOML(t *testing.T) {
	j, err := lava.Load("testdata/iperf-multinode.yaml")
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, j.Encode(&buf))
	dir := t.TempDir()
	path := filepath.Join(dir, "iperf.toml")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
	back, err := jobs.Load(path)
	require.NoError(t, err, buf.String())
	assert.Equal(t, j.Name, back.Name)
	assert.Equal(t, j.Roles, back.Roles)
	require.Len(t, back.Actions, len(j.Actions))
	for i, a := range back.Actions {
		assert.Equal(t, j.Actions[i].Run, a.Run)
		assert.Equal(t, j.Actions[i].Name, a.Name)
		assert.Equal(t, j.Actions[i].Timeout, a.Timeout)
	}
	assert.True(t, strings.Contains(buf.String(), "[roles.client]"), buf.String())
}

// TestAcceptedKeys: the harmless keys of real LAVA jobs are accepted and
// honoured where troupe has the concept.
func TestAcceptedKeys(t *testing.T) {
	src := `job_name: first
job_name: accepted
context: {arch: arm64}
timeouts:
  job: {minutes: 20}
  connection: {minutes: 2}
  connections: {lava-test-shell: {seconds: 30}}
  actions:
    lava-test-shell: {minutes: 7}
    auto-login-action: {minutes: 3}
protocols:
  lava-multinode:
    roles:
      server: {device_type: bbb, context: {console_device: ttyS2}}
      client: {device_type: bbb, count: 2}
actions:
- deploy:
    role: [server, client]
    to: tftp
    kernel: {url: zImage, type: zimage}
    ramdisk: {url: ramdisk.cpio, header: u-boot}
    dtb: {url: 'boards/board.dtb'}
    failure_retry: 3
- boot:
    role: server
    method: u-boot
    commands: ramdisk
    media: tmpfs
    prompts: 'root@bbb:'
    auto_login: {login_prompt: 'login:', username: root, password_prompt: 'Password:', password: x, login_commands: [id]}
    protocols:
      lava-multinode:
      - {action: uboot-commands, request: lava-send, messageID: booting, message: {board: bbb}}
- boot:
    role: [client]
    method: u-boot
    prompts: ['# ', '$ ']
    commands: ['setenv serverip {SERVER_IP}', 'tftp {KERNEL_ADDR} {KERNEL}', 'bootz ${kernel_addr_r} - {DTB_ADDR}']
- test:
    role: [client]
    protocols:
      lava-multinode:
      - {action: lava-test-shell, request: lava-wait-all, messageID: ready, role: server}
    definitions:
    - {from: inline, name: one, path: inline/one.yaml, repository: {run: {steps: [a]}}}
    - {from: inline, name: two, path: inline/two.yaml, repository: {run: {steps: [b]}}}
`
	var warnings []string
	opts := lava.DefaultOptions()
	opts.Warn = func(s string) { warnings = append(warnings, s) }
	j, err := lava.ImportWith("dir/job.yaml", []byte(src), opts)
	require.NoError(t, err)
	assert.Equal(t, "accepted", j.Name, "LAVA keeps the last of duplicate keys")
	assert.Equal(t, []string{"dir/job.yaml:2: job_name: warning: duplicate key: the value on line 2 replaces the one on line 1 (LAVA keeps the last)"}, warnings)
	assert.Equal(t, 20*time.Minute, j.Timeout)
	require.Len(t, j.Actions, 5)
	assert.Equal(t, &jobs.Images{Kernel: "dir/zImage", Initrd: "dir/ramdisk.cpio", DTB: "dir/boards/board.dtb"}, j.Actions[0].Images)
	assert.Equal(t, []string{"server"}, j.Actions[1].Roles)
	assert.Equal(t, jobs.Login{Prompt: "login:", User: "root", PasswordPrompt: "Password:", Password: "x", ShellPrompt: "(?:root@bbb:)", Commands: []string{"id"}}, j.Actions[1].Login, "auto_login, login_commands typed after it; prompts (a string) the shell prompt")
	assert.Equal(t, "(?:# )|(?:$ )", j.Actions[2].Login.ShellPrompt, "prompts (a list): any one of them")
	assert.Equal(t, 3*time.Minute, j.Actions[1].Timeout, "timeouts.actions.auto-login-action → boot actions")
	assert.Equal(t, []jobs.Request{{Kind: "send", ID: "booting", Args: []string{"board=bbb"}}}, j.Actions[1].Before)
	assert.Equal(t, []string{"setenv serverip {server_ip}", "tftp {kernel_addr} {kernel}", "bootz ${{kernel_addr_r}} - {dtb_addr}"}, j.Actions[2].BootCommands,
		"a list of boot commands: the job's own, LAVA's placeholders as troupe's")
	assert.Equal(t, "", j.Actions[2].Commands)
	assert.Equal(t, 7*time.Minute, j.Actions[3].Timeout, "timeouts.actions.lava-test-shell → test actions")
	assert.Equal(t, []jobs.Request{{Kind: "wait-all", ID: "ready", Args: []string{"server"}}}, j.Actions[3].Before)
	assert.Nil(t, j.Actions[4].Before, "the request comes before the LAVA action, once")
	roundTrip(t, j)
}
