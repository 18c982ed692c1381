package sim

import (
	"context"

	"github.com/troupe-lab/troupe/boot"
)

// BootWith boots the board as boot.Boot does. A stand-in board
// (Options.StandIn) keeps its own login prompts, user and password: the
// job's are those of the image it stands in for; their login commands
// are typed all the same. Other boards take the job's login. Command sets
// and u-boot commands are not the business of a board without a
// bootloader prompt.
func (b *Board) BootWith(ctx context.Context, con boot.Console, spec boot.Spec) error {
	p := boot.DefaultPrompts()
	if b.o.StandIn {
		p.Commands = spec.Login.Commands
	} else {
		// The shell is the simulator's own, never the job's image: it
		// keeps its prompt whatever the job's prompts (LAVA's) say.
		login := spec.Login
		login.ShellPrompt = ""
		var err error
		if p, err = login.Apply(p); err != nil {
			return err
		}
	}
	return boot.Boot(ctx, b, con, p)
}
