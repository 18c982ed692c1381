package sim

// The sandbox stages are C (stage.c): a constructor that runs before the
// Go runtime starts. This package needs cgo; built without it, the C file
// makes the build fail ("C source files not allowed when not using cgo").

// #cgo CFLAGS: -Wall -Wextra -Werror
// #cgo LDFLAGS: -Wl,-z,now
import "C"
