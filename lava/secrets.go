package lava

import "go.yaml.in/yaml/v3"

// SecretValues returns the values of the top-level secrets mapping of the
// LAVA job definition data, without importing the job (nothing is
// fetched): what a server masks in the job's source when it shows it. The
// file's bounds are checked as Import checks them.
func SecretValues(file string, data []byte) ([]string, error) {
	root, err := parseBounded(file, data)
	if err != nil {
		return nil, err
	}
	root = deref(root)
	if root == nil || root.Kind != yaml.MappingNode {
		return nil, nil
	}
	var out []string
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := deref(root.Content[i]), deref(root.Content[i+1])
		if k == nil || v == nil || k.Kind != yaml.ScalarNode || k.Value != "secrets" || v.Kind != yaml.MappingNode {
			continue
		}
		// Every duplicate secrets key: LAVA keeps the last, but masking
		// the values of all of them hides no more than the submitter sent.
		for j := 1; j < len(v.Content); j += 2 {
			if s := deref(v.Content[j]); s != nil && s.Kind == yaml.ScalarNode && s.Value != "" {
				out = append(out, s.Value)
			}
		}
	}
	return out, nil
}
