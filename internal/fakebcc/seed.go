package fakebcc

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// LoadSeedFile reads instance states from a file and applies them. The file
// is either a JSON object mapping ids to statuses ({"i-abc":"Running"}) or
// lines of "<id> <status>" (blank lines and # comments ignored).
func (s *Server) LoadSeedFile(path string) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("seed file: %w", err)
	}
	states := map[string]string{}
	if trimmed := strings.TrimSpace(string(raw)); strings.HasPrefix(trimmed, "{") {
		if err := json.Unmarshal(raw, &states); err != nil {
			return 0, fmt.Errorf("seed file %s: %w", path, err)
		}
	} else {
		for n, line := range strings.Split(string(raw), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			f := strings.Fields(line)
			if len(f) != 2 {
				return 0, fmt.Errorf("seed file %s:%d: want \"<id> <status>\", got %q", path, n+1, line)
			}
			states[f[0]] = f[1]
		}
	}
	for id, status := range states {
		switch status {
		case Running, Stopping, Stopped:
		default:
			return 0, fmt.Errorf("seed file %s: instance %s: status %q is not Running, Stopping or Stopped", path, id, status)
		}
		s.SetStatus(id, status)
	}
	return len(states), nil
}
