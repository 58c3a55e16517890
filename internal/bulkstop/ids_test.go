package bulkstop_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/bccstop/bccstop/internal/bulkstop"
)

// TestParseIDsCountsEveryInvalidID: past ten bad ids the error still counts
// them all, and lists the first ten.
func TestParseIDsCountsEveryInvalidID(t *testing.T) {
	var args []string
	for i := range 12 {
		args = append(args, fmt.Sprintf("bad-%d", i))
	}
	_, err := bulkstop.ParseIDs(args, nil, "")
	if err == nil || !strings.HasPrefix(err.Error(), "12 invalid instance ids") || !strings.Contains(err.Error(), "… and 2 more") {
		t.Fatalf("err = %v", err)
	}
}
