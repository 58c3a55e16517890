package fakebcc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// seedEntry is one instance of a seed file; tags is nil when the entry
// names none.
type seedEntry struct {
	status string
	tags   map[string]string
}

// LoadSeedFile reads instance states and tags from a file and applies them,
// all or nothing. The file is either a JSON object mapping ids to a status
// or to an object with a status and tags:
//
//	{"i-abc":"Running", "i-def":{"status":"Stopped","tags":{"env":"staging"}}}
//
// or lines of "<id> <status> [key=value …]" (blank lines and # comments
// ignored; a value with spaces needs the JSON form). Statuses are Running,
// Stopping or Stopped; tags follow SetTags's rules.
func (s *Server) LoadSeedFile(path string) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("seed file: %w", err)
	}
	var entries map[string]seedEntry
	if trimmed := bytes.TrimSpace(raw); bytes.HasPrefix(trimmed, []byte("{")) {
		entries, err = parseSeedJSON(raw)
	} else {
		entries, err = parseSeedLines(string(raw))
	}
	if err != nil {
		return 0, fmt.Errorf("seed file %s%w", path, err)
	}
	for _, id := range slices.Sorted(maps.Keys(entries)) {
		e := entries[id]
		switch e.status {
		case Running, Stopping, Stopped:
		default:
			return 0, fmt.Errorf("seed file %s: instance %s: status %q is not Running, Stopping or Stopped", path, id, e.status)
		}
		for k, v := range e.tags {
			if err := checkTag(k, v); err != nil {
				return 0, fmt.Errorf("seed file %s: instance %s: %w", path, id, err)
			}
		}
	}
	for id, e := range entries {
		s.SetStatus(id, e.status)
		if e.tags != nil {
			_ = s.SetTags(id, e.tags) // checked above, and the instance exists
		}
	}
	return len(entries), nil
}

// parseSeedJSON reads the JSON form; errors start with ": ".
func parseSeedJSON(raw []byte) (map[string]seedEntry, error) {
	var values map[string]json.RawMessage
	if err := json.Unmarshal(raw, &values); err != nil {
		return nil, fmt.Errorf(": %w", err)
	}
	entries := make(map[string]seedEntry, len(values))
	for id, v := range values {
		var status string
		if json.Unmarshal(v, &status) == nil {
			entries[id] = seedEntry{status: status}
			continue
		}
		var obj struct {
			Status *string           `json:"status"`
			Tags   map[string]string `json:"tags"`
		}
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&obj); err != nil {
			return nil, fmt.Errorf(`: instance %s: want "<status>" or {"status":…,"tags":{…}}: %w`, id, err)
		}
		if obj.Status == nil {
			return nil, fmt.Errorf(": instance %s: no status", id)
		}
		entries[id] = seedEntry{status: *obj.Status, tags: obj.Tags}
	}
	return entries, nil
}

// parseSeedLines reads the line form; errors start with ":<line>: ".
func parseSeedLines(text string) (map[string]seedEntry, error) {
	entries := map[string]seedEntry{}
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf(":%d: want \"<id> <status> [key=value …]\", got %q", n+1, line)
		}
		e := seedEntry{status: f[1]}
		for _, kv := range f[2:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf(":%d: tag %q: want key=value (key= for an empty value)", n+1, kv)
			}
			if err := checkTag(k, v); err != nil {
				return nil, fmt.Errorf(":%d: %w", n+1, err)
			}
			if _, dup := e.tags[k]; dup {
				return nil, fmt.Errorf(":%d: tag %s given twice", n+1, k)
			}
			if e.tags == nil {
				e.tags = map[string]string{}
			}
			e.tags[k] = v
		}
		entries[f[0]] = e
	}
	return entries, nil
}
