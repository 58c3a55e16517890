// Package bulkstop is the engine of `bccstop stop`: it resolves the target
// instances (ids given, and instances listed by tag), publishes stop
// commands for them at JetStream's asynchronous rate, follows their result
// events, shows progress, and reports how each one ended.
package bulkstop

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/bccstop/bccstop/messages"
)

// IDList is a set of instance ids in the order first seen.
type IDList struct {
	IDs        []string
	Duplicates int // ids given more than once, stopped once
}

// ParseIDs collects instance ids from args and then from r (one per line;
// blank lines and # comments ignored), removing duplicates. Every invalid id
// is reported, with its line, in one error. No ids at all is no error:
// tags may name the targets (see ResolveTargets).
func ParseIDs(args []string, r io.Reader, source string) (IDList, error) {
	var list IDList
	seen := map[string]bool{}
	var bad []string
	add := func(id, where string) {
		switch {
		case !messages.ValidInstanceID(id):
			bad = append(bad, fmt.Sprintf("%s: %q is not an instance id", where, truncate(id, 70)))
		case seen[id]:
			list.Duplicates++
		default:
			seen[id] = true
			list.IDs = append(list.IDs, id)
		}
	}
	for i, a := range args {
		add(strings.TrimSpace(a), fmt.Sprintf("argument %d", i+1))
	}
	if r != nil {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			add(line, fmt.Sprintf("%s:%d", source, n))
		}
		if err := sc.Err(); err != nil {
			return list, fmt.Errorf("reading %s: %w", source, err)
		}
	}
	if n := len(bad); n > 0 {
		more := ""
		if n > 10 {
			more = fmt.Sprintf("\n  … and %d more", n-10)
			bad = bad[:10]
		}
		return list, fmt.Errorf("%s:\n  %s%s\n%s", plural(n, "invalid instance id", "invalid instance ids"), strings.Join(bad, "\n  "), more, messages.InstanceIDForm)
	}
	return list, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// MaxBatchID is the longest batch id: with "." and a 64-byte instance id
// the command id stays within the 128 bytes the contract allows.
const MaxBatchID = 63

// ValidBatchID reports whether b can prefix command ids, and schedule
// ids: a command id that forms a subject (no empty token).
func ValidBatchID(b string) bool {
	return len(b) <= MaxBatchID && messages.ValidScheduleID(b)
}

// NewBatchID returns a fresh batch id, for a job run without --batch-id.
func NewBatchID(now time.Time) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return "stop-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(r[:])
}

// CommandID derives the command identity of instance id in batch b, so a
// re-run of the same batch names the same commands.
func CommandID(batch, instanceID string) string { return batch + "." + instanceID }
