package jobs

import (
	"fmt"

	"github.com/BurntSushi/toml"

	"github.com/troupe-lab/troupe/jobs/tomlfile"
)

// SecretValues returns the values of the secrets table of the troupe job
// file data, decoding that table only: what a server masks in the job's
// source when it shows it. The file's bounds are checked as Parse checks
// them.
func SecretValues(file string, data []byte) ([]string, error) {
	if err := tomlfile.CheckBounds(file, data); err != nil {
		return nil, err
	}
	var doc struct {
		Secrets map[string]any `toml:"secrets"`
	}
	if _, err := toml.Decode(string(data), &doc); err != nil {
		return nil, fmt.Errorf("%s: secrets: %w", file, err)
	}
	var out []string
	for _, v := range doc.Secrets {
		if s, ok := v.(string); ok && s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}
