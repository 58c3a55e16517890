package fakebcc

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// MaxDescribeIDs is the most instance ids one batch describe may name, as
// Baidu documents it.
const MaxDescribeIDs = 100

// batchBody is the body of a batch describe.
type batchBody struct {
	InstanceIDs []string `json:"instanceIds"`
	// Baidu's Go SDK marshals its whole argument, so its body also
	// carries Marker and MaxKeys; the query is what counts, as documented.
	Marker  json.RawMessage `json:"marker"`
	MaxKeys json.RawMessage `json:"maxKeys"`
}

// describeBatch serves POST /v2/instance/listByInstanceId: the instances
// the body names that exist, in id order, paged like the list (marker =
// the id a page starts from, maxKeys 1–1000, nextMarker and isTruncated
// while more follow). An id of no instance is left out of the answer, as
// the real API leaves out what it does not have; an instance the key may
// not see makes the whole call 403 AccessDenied (the stricter of the two
// answers a service could give: a client that then describes one by one
// copes with either); an injected describe failure of a named instance
// (FailDescribe) makes the whole call fail with it.
func (s *Server) describeBatch(w http.ResponseWriter, r *http.Request, reqID string, at time.Time) {
	call := Call{At: at, Op: OpDescribeBatch}
	refuse := func(e apiError) {
		s.mu.Lock()
		call.Status, call.Code = e.status, e.code
		s.recordLocked(call)
		s.mu.Unlock()
		writeError(w, reqID, e)
	}
	q, err := parseListQuery(r.URL.RawQuery, false)
	if err != nil {
		refuse(apiError{http.StatusBadRequest, "InvalidURI", err.Error()})
		return
	}
	var body batchBody
	if e := readJSONBody(r, &body); e != nil {
		refuse(*e)
		return
	}
	seen := make(map[string]bool, len(body.InstanceIDs))
	for _, id := range body.InstanceIDs {
		if !seen[id] {
			seen[id] = true
			call.Instances = append(call.Instances, id)
		}
	}
	if n := len(body.InstanceIDs); n == 0 || n > MaxDescribeIDs {
		refuse(apiError{http.StatusBadRequest, "InappropriateJSON", fmt.Sprintf(
			"The JSON you provided was well-formed and valid, but not appropriate for this operation: instanceIds names %d instances, want 1 to %d", n, MaxDescribeIDs)})
		return
	}

	s.mu.Lock()
	var found []string
	for _, id := range call.Instances {
		if fail, ok := s.failDesc[id]; ok {
			s.stats.Injected++
			s.mu.Unlock()
			refuse(fail.apiError)
			return
		}
		in, known := s.lookupLocked(id)
		if !known {
			continue
		}
		if in.attrs.Denied {
			s.mu.Unlock()
			refuse(accessDenied("describe", id))
			return
		}
		found = append(found, id)
	}
	slices.Sort(found)
	answer := s.pageLocked(found, q)
	call.Status = http.StatusOK
	s.recordLocked(call)
	s.mu.Unlock()
	_ = json.NewEncoder(w).Encode(answer)
}
