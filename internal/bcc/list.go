package bcc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxListKeys is the most instances the list API returns on one page, and
// its default page size.
const MaxListKeys = 1000

// Tag is a tag on an instance. In ListRequest.Tags it is a filter, and an
// empty Value there means "this key, with any value".
type Tag struct {
	Key   string `json:"tagKey"`
	Value string `json:"tagValue"`
}

func (t Tag) String() string {
	if t.Value == "" {
		return t.Key
	}
	return t.Key + "=" + t.Value
}

// CheckFilter reports why t cannot be sent as a list filter, or nil. The
// list API joins filters as "k1:v1,k2", so a key must be non-empty and
// neither a key nor a value may hold ',' or ':' (Baidu's tag rules allow
// neither in tags anyway).
func (t Tag) CheckFilter() error {
	switch {
	case t.Key == "":
		return errors.New("tag filter with an empty key")
	case strings.ContainsAny(t.Key, ",:"):
		return fmt.Errorf("tag key %q: a key cannot contain %s", t.Key, quoteSeparators(t.Key))
	case strings.ContainsAny(t.Value, ",:"):
		return fmt.Errorf("tag %s: a value cannot contain %s", t.Key, quoteSeparators(t.Value))
	}
	for _, r := range t.Key + t.Value {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("tag %q: control characters are not allowed", t.Key)
		}
	}
	return nil
}

func quoteSeparators(s string) string {
	var q []string
	for _, sep := range []string{",", ":"} {
		if strings.Contains(s, sep) {
			q = append(q, strconv.Quote(sep))
		}
	}
	return strings.Join(q, " or ")
}

// HasTags reports whether the instance matches filters the way the list
// API matches them: for every key named, the instance has that key, with
// one of the values given for it (any value when a filter for that key has
// none). Keys are ANDed; values given for one key are alternatives. Keys
// and values compare exactly. No filters match every instance.
func (in Instance) HasTags(filters []Tag) bool {
	have := make(map[string]string, len(in.Tags))
	for _, t := range in.Tags {
		have[t.Key] = t.Value
	}
	wanted := map[string]bool{} // key → some filter on it matched
	for _, f := range filters {
		v, ok := have[f.Key]
		wanted[f.Key] = wanted[f.Key] || ok && (f.Value == "" || f.Value == v)
	}
	for _, matched := range wanted {
		if !matched {
			return false
		}
	}
	return true
}

// ListRequest asks for one page of instances.
type ListRequest struct {
	Region string // "" for the default endpoint
	// Tags are filters (see Instance.HasTags); none lists every instance.
	Tags []Tag
	// Marker is where the page starts: "" for the first page, then the
	// NextMarker of the page before (the real API's markers are instance ids).
	Marker string
	// MaxKeys is the page size, 1 to MaxListKeys; 0 leaves it to the API,
	// whose default is MaxListKeys.
	MaxKeys int
	// Limit bounds how many instances ListAllInstances collects (0:
	// DefaultListLimit): past it the listing stops with ErrTooManyInstances
	// rather than hold an account's every instance in memory.
	Limit int
}

// DefaultListLimit is ListAllInstances' bound when a request sets none.
const DefaultListLimit = 100_000

// ErrTooManyInstances means a listing matched more instances than its limit.
var ErrTooManyInstances = errors.New("more instances match than the listing's limit")

// ListPage is one page of the list API's answer.
type ListPage struct {
	Instances   []Instance `json:"instances"`
	Marker      string     `json:"marker"`
	IsTruncated bool       `json:"isTruncated"` // more pages follow
	NextMarker  string     `json:"nextMarker"`  // the Marker of the next page
	MaxKeys     int        `json:"maxKeys"`
}

// query checks r and encodes its parameters as Baidu's SDK sends them:
// RFC 3986 percent-encoding, so ':' and ',' travel as %3A and %2C and a
// space as %20.
func (r ListRequest) query() (string, error) {
	if r.MaxKeys < 0 || r.MaxKeys > MaxListKeys {
		return "", fmt.Errorf("maxKeys %d: a page holds 1 to %d instances", r.MaxKeys, MaxListKeys)
	}
	q := url.Values{}
	if len(r.Tags) > 0 {
		parts := make([]string, len(r.Tags))
		for i, t := range r.Tags {
			if err := t.CheckFilter(); err != nil {
				return "", err
			}
			parts[i] = t.Key
			if t.Value != "" {
				parts[i] += ":" + t.Value
			}
		}
		q.Set("tags", strings.Join(parts, ","))
	}
	if r.Marker != "" {
		q.Set("marker", r.Marker)
	}
	if r.MaxKeys != 0 {
		q.Set("maxKeys", strconv.Itoa(r.MaxKeys))
	}
	// url.Values encodes a space as '+'; a literal '+' is already %2B.
	return strings.ReplaceAll(q.Encode(), "+", "%20"), nil
}

// ListInstances calls GET /v2/instance?tags=…&marker=…&maxKeys=… and
// returns one page. A request that cannot be sent (a bad filter or page
// size, an unknown region) fails before any call; a non-2xx answer is an
// *APIError and a transport failure a *TransportError, as for stop.
func (c *Client) ListInstances(ctx context.Context, r ListRequest) (ListPage, Response, error) {
	query, err := r.query()
	if err != nil {
		return ListPage{}, Response{}, fmt.Errorf("list instances: %w", err)
	}
	resp, payload, err := c.call(ctx, http.MethodGet, r.Region, "/v2/instance", query, nil, maxListResponseBytes, nil)
	if err != nil {
		return ListPage{}, resp, fmt.Errorf("list instances: %w", err)
	}
	if len(payload) > maxListResponseBytes {
		return ListPage{}, resp, fmt.Errorf("list instances: the answer is larger than %d bytes", maxListResponseBytes)
	}
	var page ListPage
	if err := json.Unmarshal(payload, &page); err != nil {
		return ListPage{}, resp, fmt.Errorf("list instances: decode answer: %w", err)
	}
	return page, resp, nil
}

// listAttempts is how many times ListAllInstances asks for one page when
// the answer is transient (see Classify); listBackoff is the first wait.
const (
	listAttempts = 3
	listBackoff  = 100 * time.Millisecond
	maxListWait  = 10 * time.Second
)

// ListAllInstances lists every instance matching r.Tags, following the pages
// from r.Marker (normally "") until the API says there are no more, r.MaxKeys
// per page. Listing changes nothing, so a page whose answer is transient
// (5xx, 429, timeout; see Classify) is asked for again, up to 3 times, after
// the Retry-After the API gave or a short backoff; any other error ends the
// listing. An instance that shows up on two pages (the fleet changed in
// between) is returned once, where it first appeared. A page that claims
// more pages without a NextMarker, or a marker seen before, is an error
// rather than a loop.
func (c *Client) ListAllInstances(ctx context.Context, r ListRequest) ([]Instance, error) {
	if _, err := r.query(); err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	var out []Instance
	seenID := map[string]bool{}
	seenMarker := map[string]bool{r.Marker: true}
	for pages := 1; ; pages++ {
		page, err := c.listPage(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("page %d: %w", pages, err)
		}
		limit := r.Limit
		if limit <= 0 {
			limit = DefaultListLimit
		}
		for _, in := range page.Instances {
			if !seenID[in.ID] {
				seenID[in.ID] = true
				out = append(out, in)
			}
		}
		if len(out) > limit {
			return nil, fmt.Errorf("list instances: %w (%d): narrow the tags", ErrTooManyInstances, limit)
		}
		if !page.IsTruncated {
			return out, nil
		}
		switch {
		case page.NextMarker == "":
			return nil, fmt.Errorf("list instances: page %d says more follow but has no nextMarker", pages)
		case seenMarker[page.NextMarker]:
			return nil, fmt.Errorf("list instances: page %d points to marker %q again", pages, page.NextMarker)
		}
		seenMarker[page.NextMarker] = true
		r.Marker = page.NextMarker
	}
}

func (c *Client) listPage(ctx context.Context, r ListRequest) (ListPage, error) {
	wait := listBackoff
	for attempt := 1; ; attempt++ {
		page, _, err := c.ListInstances(ctx, r)
		transient, after := Classify(err)
		if err == nil || !transient || attempt == listAttempts || ctx.Err() != nil {
			return page, err
		}
		if after <= 0 {
			after = wait
		}
		wait *= 2
		t := time.NewTimer(min(after, maxListWait))
		select {
		case <-ctx.Done():
			t.Stop()
			return page, err
		case <-t.C:
		}
	}
}
