package main

import "testing"

func TestSuggest(t *testing.T) {
	names := []string{"worker", "dev", "stop", "pause", "resume", "status", "schedules", "hold", "holds", "release", "fakebcc", "probe", "version", "help", "completion"}
	tests := []struct{ word, want string }{
		{"statsu", "status"},
		{"staus", "status"},
		{"stpo", "stop"},
		{"STOP", "stop"},
		{"schedule", "schedules"},
		{"relase", "release"},
		{"fakebc", "fakebcc"},
		{"vers", "version"}, // the only command it begins
		{"sta", "status"},
		{"st", ""}, // stop or status
		{"xyzzy", ""},
		{"nonsense", ""},
		{"d", ""},
	}
	for _, tc := range tests {
		if got := suggest(tc.word, names); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.word, got, tc.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"stop", "stop", 0}, {"stop", "stpo", 1}, {"stop", "sto", 1}, {"stop", "step", 1}, {"status", "statsu", 1}, {"kitten", "sitting", 3},
	}
	for _, tc := range tests {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
