package boot_test

import (
	"context"
	"regexp"
	"testing"

	"github.com/troupe-lab/troupe/boot"
)

// nopBoard is a power switch and a console that answer at once: what is
// left is boot's own work per board.
type nopBoard struct{ on bool }

func (b *nopBoard) On(context.Context) error            { b.on = true; return nil }
func (b *nopBoard) Off(context.Context) error           { b.on = false; return nil }
func (b *nopBoard) State(context.Context) (bool, error) { return b.on, nil }
func (b *nopBoard) Send(string) error                   { return nil }
func (b *nopBoard) Discard()                            {}
func (b *nopBoard) Expect(context.Context, *regexp.Regexp) ([]string, error) {
	return []string{"", "login: ", ""}, nil
}

// BenchmarkBoot: boot's own CPU for one board's boot with the default
// prompts (a sim board's), the console answering at once.
func BenchmarkBoot(b *testing.B) {
	ctx := context.Background()
	nb := &nopBoard{}
	b.ReportAllocs()
	for b.Loop() {
		if err := boot.Boot(ctx, nb, nb, boot.DefaultPrompts()); err != nil {
			b.Fatal(err)
		}
	}
}
