package lab

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/troupe-lab/troupe/jobs/tomlfile"
)

// boardKey is the key of an error about a board table: board[3] and what
// follows it.
var boardKey = regexp.MustCompile(`^board\[(\d+)\](?:\.(.*))?$`)

// nameBoards rewrites the keys of errs that are about a board with a valid
// name ("board[1].power.url") to name it: `board "bbb-03": power.url`.
func nameBoards(errs error, names []string) error {
	var es tomlfile.Errors
	if !errors.As(errs, &es) {
		return errs
	}
	for _, e := range es {
		m := boardKey.FindStringSubmatch(e.Key)
		if m == nil {
			continue
		}
		i, err := strconv.Atoi(m[1])
		if err != nil || i >= len(names) || names[i] == "" {
			continue
		}
		key := fmt.Sprintf("board %q", names[i])
		if m[2] != "" {
			key += ": " + m[2]
		}
		e.Key = key
	}
	return es
}

// boardNames is the valid name of each board table, "" where it has none.
func boardNames(tables []tomlfile.Table) []string {
	names := make([]string, len(tables))
	for i, t := range tables {
		if s, ok := t.M["name"].(string); ok && validName(s) {
			names[i] = s
		}
	}
	return names
}
