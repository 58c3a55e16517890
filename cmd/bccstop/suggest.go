package main

import (
	"fmt"
	"io"
	"strings"
)

// suggest returns the candidate a mistyped word most likely meant: the
// closest by edit distance (a swap of two neighbouring letters counts as
// one edit), if it is close enough to be a typo, else the only candidate
// the word begins; "" when none is.
func suggest(word string, candidates []string) string {
	best, bestDist := "", 0
	for _, c := range candidates {
		d := editDistance(strings.ToLower(word), c)
		if best == "" || d < bestDist {
			best, bestDist = c, d
		}
	}
	if best != "" && bestDist <= max(1, len([]rune(best))/3) {
		return best
	}
	prefixed := ""
	for _, c := range candidates {
		if len(word) >= 2 && strings.HasPrefix(c, strings.ToLower(word)) {
			if prefixed != "" {
				return "" // ambiguous
			}
			prefixed = c
		}
	}
	return prefixed
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of neighbours.
func editDistance(a, b string) int {
	s, t := []rune(a), []rune(b)
	// d[i][j] is the distance between s[:i] and t[:j].
	d := make([][]int, len(s)+1)
	for i := range d {
		d[i] = make([]int, len(t)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(s); i++ {
		for j := 1; j <= len(t); j++ {
			cost := 1
			if s[i-1] == t[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && s[i-1] == t[j-2] && s[i-2] == t[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(s)][len(t)]
}

// unknownWord reports a word that names no command (or action) on w:
// what was meant, if it is clear, and where the list is. It returns
// exitUsage.
func unknownWord(w io.Writer, who, kind, word string, candidates []string, listedBy string) int {
	fmt.Fprintf(w, "%s: unknown %s %q", who, kind, word)
	if s := suggest(word, candidates); s != "" {
		fmt.Fprintf(w, "; did you mean %s?", s)
	}
	fmt.Fprintf(w, "\nRun %q for the list of %ss.\n", listedBy, kind)
	return exitUsage
}
