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
// names none, attrs when it names no attribute.
type seedEntry struct {
	status string
	tags   map[string]string
	attrs  *Attributes
}

// AttributePrefix begins an attribute in the line form of a seed file
// ("attr:prepaid"). No tag can be mistaken for one: a tag key may not hold
// ':'.
const AttributePrefix = "attr:"

// LoadSeedFile reads instance states, tags and attributes from a file and
// applies them, all or nothing. The file is either a JSON object mapping
// ids to a status or to an object with a status, tags and attributes:
//
//	{"i-abc":"Running",
//	 "i-def":{"status":"Stopped","tags":{"env":"staging"},"prepaid":true,"localDisk":true,
//	          "noChargeUnsupported":true,"denied":true}}
//
// or lines of "<id> <status> [key=value …] [attr:NAME …]" (blank lines and
// # comments ignored; a tag value with spaces needs the JSON form), for
// example "i-def Stopped env=staging attr:prepaid attr:denied". A status is
// one the API reports (Running, Stopped, Starting, …; see ValidStatus);
// tags follow SetTags's rules; the attributes are those of Attributes,
// named prepaid, localDisk, noChargeUnsupported and denied. An entry that
// names no tags or no attributes leaves an existing instance's as they are.
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
		if !ValidStatus(e.status) {
			return 0, fmt.Errorf("seed file %s: instance %s: status %q is not one the API reports (%s)", path, id, e.status, statusNames)
		}
		for k, v := range e.tags {
			if err := checkTag(k, v); err != nil {
				return 0, fmt.Errorf("seed file %s: instance %s: %w", path, id, err)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, e := range entries {
		in, ok := s.instances[id]
		if !ok {
			in = &instance{}
			s.instances[id] = in
		}
		in.status, in.stoppedAt = e.status, s.opts.Now()
		if e.tags != nil {
			in.tags = maps.Clone(e.tags)
			if len(in.tags) == 0 {
				in.tags = nil
			}
		}
		if e.attrs != nil {
			in.attrs = *e.attrs
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
			Status              *string           `json:"status"`
			Tags                map[string]string `json:"tags"`
			Prepaid             *bool             `json:"prepaid"`
			LocalDisk           *bool             `json:"localDisk"`
			NoChargeUnsupported *bool             `json:"noChargeUnsupported"`
			Denied              *bool             `json:"denied"`
		}
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&obj); err != nil {
			return nil, fmt.Errorf(`: instance %s: want "<status>" or {"status":…,"tags":{…},"prepaid":…,"localDisk":…,"noChargeUnsupported":…,"denied":…}: %w`, id, err)
		}
		if obj.Status == nil {
			return nil, fmt.Errorf(": instance %s: no status", id)
		}
		e := seedEntry{status: *obj.Status, tags: obj.Tags}
		if obj.Prepaid != nil || obj.LocalDisk != nil || obj.NoChargeUnsupported != nil || obj.Denied != nil {
			e.attrs = &Attributes{Prepaid: isTrue(obj.Prepaid), LocalDisk: isTrue(obj.LocalDisk),
				NoChargeUnsupported: isTrue(obj.NoChargeUnsupported), Denied: isTrue(obj.Denied)}
		}
		entries[id] = e
	}
	return entries, nil
}

func isTrue(b *bool) bool { return b != nil && *b }

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
			return nil, fmt.Errorf(":%d: want \"<id> <status> [key=value …] [attr:NAME …]\", got %q", n+1, line)
		}
		e := seedEntry{status: f[1]}
		named := map[string]bool{}
		for _, word := range f[2:] {
			if name, ok := strings.CutPrefix(word, AttributePrefix); ok {
				if e.attrs == nil {
					e.attrs = &Attributes{}
				}
				if err := e.attrs.set(name); err != nil {
					return nil, fmt.Errorf(":%d: %w (an attribute is attr:NAME, with no value)", n+1, err)
				}
				if named[name] {
					return nil, fmt.Errorf(":%d: attribute %s given twice", n+1, name)
				}
				named[name] = true
				continue
			}
			k, v, ok := strings.Cut(word, "=")
			if !ok {
				return nil, fmt.Errorf(":%d: tag %q: want key=value (key= for an empty value), or attr:NAME for an attribute", n+1, word)
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
