package fakebcc

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxListKeys is the largest page the list API serves, and its default.
const MaxListKeys = 1000

// instanceView is an instance as describe and list show it: the fields the
// real API always has that bccstop and Baidu's SDK read.
type instanceView struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	Status        string    `json:"status"`
	InstanceType  string    `json:"instanceType"`
	PaymentTiming string    `json:"paymentTiming"`
	Tags          []tagView `json:"tags"`
}

type tagView struct {
	Key   string `json:"tagKey"`
	Value string `json:"tagValue"`
}

func (s *Server) viewLocked(id string, in *instance) instanceView {
	v := instanceView{ID: id, Name: id, Status: s.statusLocked(in), InstanceType: "N3", PaymentTiming: "Postpaid", Tags: []tagView{}}
	if in.attrs.Prepaid {
		v.PaymentTiming = "Prepaid"
	}
	for _, k := range slices.Sorted(maps.Keys(in.tags)) {
		v.Tags = append(v.Tags, tagView{k, in.tags[k]})
	}
	return v
}

// SetTags replaces the tags of an existing instance (nil or empty removes
// them all). It fails for an unknown instance, and for a tag the list API
// could not filter on: an empty key, or a key or value holding ',' or ':'
// (its separators) or a control character.
func (s *Server) SetTags(id string, tags map[string]string) error {
	for k, v := range tags {
		if err := checkTag(k, v); err != nil {
			return fmt.Errorf("instance %s: %w", id, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return fmt.Errorf("instance %s does not exist: give it a status first", id)
	}
	in.tags = maps.Clone(tags)
	if len(in.tags) == 0 {
		in.tags = nil
	}
	return nil
}

// Tags returns a copy of the tags of instance id, and whether it exists.
func (s *Server) Tags(id string) (map[string]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return nil, false
	}
	out := maps.Clone(in.tags)
	if out == nil {
		out = map[string]string{}
	}
	return out, true
}

func checkTag(key, value string) error {
	switch {
	case key == "":
		return errors.New("a tag key cannot be empty")
	case strings.ContainsAny(key, ",:"):
		return fmt.Errorf("tag key %q: ',' and ':' are not allowed", key)
	case strings.ContainsAny(value, ",:"):
		return fmt.Errorf("tag %s: value %q: ',' and ':' are not allowed", key, value)
	case strings.ContainsFunc(key+value, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("tag %q: control characters are not allowed", key)
	}
	return nil
}

// listQuery is a parsed GET /v2/instance query.
type listQuery struct {
	marker  string
	maxKeys int
	// tags maps each key filtered on to the values accepted for it; an
	// empty set accepts any value.
	tags map[string]map[string]bool
}

// parseListQuery reads the list parameters the simulator implements (tags,
// marker, maxKeys), strictly: any other parameter, a repeated one, or a
// malformed value is an error, so a client that sends what it did not mean
// to finds out here rather than in production. Without withTags, tags is
// one of the others (the batch describe pages the same way, by id).
func parseListQuery(raw string, withTags bool) (listQuery, error) {
	q := listQuery{maxKeys: MaxListKeys}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return q, fmt.Errorf("malformed query string: %v", err)
	}
	implemented := "marker and maxKeys"
	if withTags {
		implemented = "tags, marker and maxKeys"
	}
	for _, k := range slices.Sorted(maps.Keys(vals)) {
		switch {
		case k == "marker", k == "maxKeys", k == "tags" && withTags:
		default:
			return q, fmt.Errorf("query parameter %q is not supported here (the simulator implements %s)", k, implemented)
		}
		if len(vals[k]) != 1 {
			return q, fmt.Errorf("query parameter %s is given %d times", k, len(vals[k]))
		}
	}
	q.marker = vals.Get("marker")
	if vals.Has("maxKeys") {
		n, err := strconv.Atoi(vals.Get("maxKeys"))
		if err != nil || n < 1 || n > MaxListKeys {
			return q, fmt.Errorf("maxKeys %q: want a whole number from 1 to %d", vals.Get("maxKeys"), MaxListKeys)
		}
		q.maxKeys = n
	}
	if vals.Has("tags") {
		q.tags = map[string]map[string]bool{}
		raw := vals.Get("tags")
		if raw == "" {
			return q, errors.New("tags is empty: want tagKey:tagValue or tagKey, comma-separated")
		}
		for _, item := range strings.Split(raw, ",") {
			key, value, hasValue := strings.Cut(item, ":")
			switch {
			case key == "":
				return q, fmt.Errorf("tags %q: an item has an empty key: want tagKey:tagValue or tagKey, comma-separated", raw)
			case hasValue && value == "":
				return q, fmt.Errorf("tags %q: %q has an empty value: give the key alone to match any value", raw, item)
			case strings.Contains(value, ":"):
				return q, fmt.Errorf("tags %q: %q has more than one ':'", raw, item)
			}
			if q.tags[key] == nil {
				q.tags[key] = map[string]bool{}
			}
			if hasValue {
				q.tags[key][value] = true
			} else {
				q.tags[key][""] = true // any value
			}
		}
	}
	return q, nil
}

// matches reports whether tags pass every key's filter: keys are ANDed, the
// values given for one key are alternatives, and a key given alone accepts
// any value.
func (q listQuery) matches(tags map[string]string) bool {
	for key, values := range q.tags {
		v, ok := tags[key]
		if !ok || !values[""] && !values[v] {
			return false
		}
	}
	return true
}

type listAnswer struct {
	Marker      string         `json:"marker"`
	IsTruncated bool           `json:"isTruncated"`
	NextMarker  string         `json:"nextMarker,omitempty"`
	MaxKeys     int            `json:"maxKeys"`
	Instances   []instanceView `json:"instances"`
}

// list serves GET /v2/instance: the instances matching the tags, in id
// order, a page of at most maxKeys starting at the first id not before
// marker (the real API's markers are instance ids); nextMarker, present only
// while isTruncated, is the first id of the next page.
func (s *Server) list(w http.ResponseWriter, r *http.Request, reqID string, at time.Time) {
	q, err := parseListQuery(r.URL.RawQuery, true)
	if err != nil {
		e := apiError{http.StatusBadRequest, "InvalidURI", err.Error()}
		s.mu.Lock()
		s.recordLocked(Call{At: at, Op: OpList, Status: e.status, Code: e.code})
		s.mu.Unlock()
		writeError(w, reqID, e)
		return
	}
	s.mu.Lock()
	ids := slices.Sorted(maps.Keys(s.instances))
	answer := s.pageLocked(ids, q)
	s.recordLocked(Call{At: at, Op: OpList, Status: http.StatusOK})
	s.mu.Unlock()
	_ = json.NewEncoder(w).Encode(answer)
}

// pageLocked is the page q asks for of the instances ids (sorted) that
// match q's tags: at most maxKeys of them, starting at the first id not
// before marker.
func (s *Server) pageLocked(ids []string, q listQuery) listAnswer {
	answer := listAnswer{Marker: q.marker, MaxKeys: q.maxKeys, Instances: []instanceView{}}
	start, _ := slices.BinarySearch(ids, q.marker)
	for _, id := range ids[start:] {
		in := s.instances[id]
		if !q.matches(in.tags) {
			continue
		}
		if len(answer.Instances) == q.maxKeys {
			answer.IsTruncated, answer.NextMarker = true, id
			break
		}
		answer.Instances = append(answer.Instances, s.viewLocked(id, in))
	}
	return answer
}

// ParseTagAssignment reads the simulator's --tag syntax,
// "ID[,ID…]=KEY:VALUE[,KEY:VALUE…]" (KEY: for an empty value), for example
// "i-abc=env:staging" or "i-a,i-b=env:staging,team:web", and returns the
// ids and the tags to give each of them. Spaces around ids and items are
// ignored; tags follow SetTags's rules.
func ParseTagAssignment(s string) (ids []string, tags map[string]string, err error) {
	fail := func(format string, args ...any) ([]string, map[string]string, error) {
		return nil, nil, fmt.Errorf("tag assignment %q: %s", strings.TrimSpace(s), fmt.Sprintf(format, args...))
	}
	left, right, ok := strings.Cut(s, "=")
	if !ok {
		return fail("want ID[,ID…]=KEY:VALUE[,KEY:VALUE…]")
	}
	if strings.TrimSpace(left) == "" {
		return fail("no instance id before '='")
	}
	for _, id := range strings.Split(left, ",") {
		if id = strings.TrimSpace(id); id == "" {
			return fail("an empty instance id")
		}
		ids = append(ids, id)
	}
	if strings.TrimSpace(right) == "" {
		return fail("no tags after '='")
	}
	tags = map[string]string{}
	for _, item := range strings.Split(right, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(item), ":")
		if !ok {
			return fail("tag %q: want KEY:VALUE (KEY: for an empty value)", strings.TrimSpace(item))
		}
		if err := checkTag(k, v); err != nil {
			return fail("%v", err)
		}
		if _, dup := tags[k]; dup {
			return fail("tag %s given twice", k)
		}
		tags[k] = v
	}
	return ids, tags, nil
}
