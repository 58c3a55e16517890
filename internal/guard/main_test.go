package guard_test

import (
	"flag"
	"os"
	"testing"
)

// TestMain runs the package's tests eight at a time unless -test.parallel
// says otherwise: they spend their time waiting on real seconds (sliding
// windows, TTLs, holds), not on CPU, and one at a time per core they would
// take minutes.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", "8")
	}
	os.Exit(m.Run())
}
