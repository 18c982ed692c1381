package jobs_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
)

// TestLAVAKeys: what imported LAVA jobs carry: images staged by name
// (images.files), a boot's named command set (commands), secrets and
// context (job and role); each survives encoding.
func TestLAVAKeys(t *testing.T) {
	src := edit(t, `image = "images/rootfs.tar"`, `images = {kernel = "zImage", files = {nfsrootfs = "rootfs.tgz", dtbo_2 = "b.dtbo"}}`)
	src = strings.Replace(src, `timeout = "2m"`+"\n"+`[[action]]`+"\n"+`type = "test"`, `timeout = "2m"`+"\ncommands = \"nfs\"\nretries = 2\nlogin = {prompt = \"bbb login:\", user = \"me\", password = \"pw\", shell_prompt = \"root@bbb:\", commands = [\"export A=1\"]}\n[[action]]\n"+`type = "test"`, 1)
	src = strings.Replace(src, "[roles.client]\n", "[roles.server.context]\nconsole_device = \"ttyS1\"\n[roles.client]\n", 1)
	src += "[secrets]\nAPI_TOKEN = \"hunter2\"\n[context]\narch = \"arm64\"\n"
	j, err := jobs.Parse("dir/job.toml", []byte(src))
	require.NoError(t, err)
	assert.Equal(t, &jobs.Images{Kernel: "dir/zImage", Files: map[string]string{"nfsrootfs": "dir/rootfs.tgz", "dtbo_2": "dir/b.dtbo"}}, j.Actions[0].Images)
	assert.Equal(t, "nfs", j.Actions[1].Commands)
	assert.Equal(t, 2, j.Actions[1].Retries)
	assert.Equal(t, jobs.Login{Prompt: "bbb login:", User: "me", Password: "pw", ShellPrompt: "root@bbb:", Commands: []string{"export A=1"}}, j.Actions[1].Login)
	assert.Equal(t, map[string]string{"API_TOKEN": "hunter2"}, j.Secrets)
	assert.Equal(t, map[string]string{"arch": "arm64"}, j.Context)
	r, _ := j.Role("server")
	assert.Equal(t, map[string]string{"console_device": "ttyS1"}, r.Context)
	roundTrip(t, j)

	// A list of commands: the job's own u-boot commands.
	j, err = jobs.Parse("dir/job.toml", []byte(edit(t, `timeout = "2m"`+"\n"+`[[action]]`+"\n"+`type = "test"`, `timeout = "2m"`+"\ncommands = [\"setenv serverip {server_ip}\", \"bootz\"]\n[[action]]\ntype = \"test\"")))
	require.NoError(t, err)
	assert.Equal(t, []string{"setenv serverip {server_ip}", "bootz"}, j.Actions[1].BootCommands)
	assert.Equal(t, "", j.Actions[1].Commands)
	roundTrip(t, j)

	// Files alone (a flashing method's images) need no kernel.
	_, err = jobs.Parse("job.toml", []byte(edit(t, `image = "images/rootfs.tar"`, `images = {files = {boot = "fw.bin"}}`)))
	require.NoError(t, err)

	for _, tc := range []struct{ name, src, want string }{
		{"file name", edit(t, `image = "images/rootfs.tar"`, `images = {kernel = "k", files = {Kernel = "x"}}`), "an image name is lower-case letters"},
		{"fixed name", edit(t, `image = "images/rootfs.tar"`, `images = {kernel = "k", files = {kernel = "x"}}`), "and not kernel"},
		{"no files", edit(t, `image = "images/rootfs.tar"`, `images = {files = {}}`), "images.files: must not be empty"},
		{"commands on test", edit(t, `run = "true"`, "run = \"true\"\ncommands = \"nfs\""), "commands: not allowed on a test action"},
		{"commands name", edit(t, `timeout = "2m"`+"\n"+`[[action]]`+"\n"+`type = "test"`, `timeout = "2m"`+"\ncommands = \"a b\"\n[[action]]\ntype = \"test\""), "commands: names a command set"},
		{"commands lines", edit(t, `timeout = "2m"`+"\n"+`[[action]]`+"\n"+`type = "test"`, `timeout = "2m"`+"\ncommands = [\"a\\nb\"]\n[[action]]\ntype = \"test\""), "commands: command 1: one line each"},
		{"commands many", edit(t, `timeout = "2m"`+"\n"+`[[action]]`+"\n"+`type = "test"`, `timeout = "2m"`+"\ncommands = ["+strings.Repeat(`"x", `, jobs.MaxBootCommands+1)+"]\n[[action]]\ntype = \"test\""), "commands: at most 64 commands"},
		{"login commands long", edit(t, `timeout = "2m"`+"\n"+`[[action]]`+"\n"+`type = "test"`, `timeout = "2m"`+"\nlogin = {commands = [\""+strings.Repeat("x", jobs.MaxBootCommandLen+1)+"\"]}\n[[action]]\ntype = \"test\""), "login.commands: command 1: at most 1024 bytes"},
		{"retries", edit(t, `run = "true"`, "run = \"true\"\nretries = 11"), "retries: must be between 0 and 10"},
		{"login prompt", edit(t, `timeout = "2m"`+"\n"+`[[action]]`+"\n"+`type = "test"`, `timeout = "2m"`+"\nlogin = {prompt = \"(\"}\n[[action]]\ntype = \"test\""), "login.prompt: not a regular expression"},
		{"shell prompt", edit(t, `timeout = "2m"`+"\n"+`[[action]]`+"\n"+`type = "test"`, `timeout = "2m"`+"\nlogin = {shell_prompt = \"[\"}\n[[action]]\ntype = \"test\""), "login.shell_prompt: not a regular expression"},
		{"secret name", base + "[secrets]\n\"A-B\" = \"hunter2\"\n", "a secret's name is a shell variable name"},
		{"secret type", base + "[secrets]\nA = 1234567\n", "secrets.A: must be a string"},
		{"secret empty", base + "[secrets]\nA = \"\"\n", "secrets.A: must not be empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := jobs.Parse("job.toml", []byte(tc.src))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "1234567", "a secret's value is never quoted")
		})
	}
}
