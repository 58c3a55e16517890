package bcc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// MaxDescribeIDs is the most instance ids one batch describe call may
// name, as Baidu documents it; DescribeInstances splits longer lists.
const MaxDescribeIDs = 100

const describeBatchPath = "/v2/instance/listByInstanceId"

// DescribeInstances describes the instances ids names with the batch
// describe, POST /v2/instance/listByInstanceId (the ids in the body, at
// most MaxDescribeIDs a call, pages by marker in the query), following
// every page, and returns them by id. An id the answer leaves out — no such
// instance, as the API answers for the instances it has and leaves out the
// rest without an error — is absent from the map, and so is anything the
// answer holds that was not asked for. A repeated id is asked for once;
// no ids make no call.
//
// Each call is paced by the limiter, signed, traced and measured like
// every other call, and nothing is retried here beyond the re-signing of a
// RequestExpired answer: a non-2xx answer is an *APIError and a transport
// failure a *TransportError, for Classify and the predicates. On an error
// the map is nil, so that an instance of a page never answered cannot be
// taken for one that does not exist. Response is that of the last call.
func (c *Client) DescribeInstances(ctx context.Context, region string, ids []string) (map[string]Instance, Response, error) {
	asked := make(map[string]bool, len(ids))
	unique := make([]string, 0, len(ids))
	for _, id := range ids {
		if id == "" {
			return nil, Response{}, errors.New("describe instances: an empty instance id")
		}
		if !asked[id] {
			asked[id] = true
			unique = append(unique, id)
		}
	}
	if !c.HasRegion(region) {
		return nil, Response{}, fmt.Errorf("describe instances: no endpoint for region %q", region)
	}
	out := make(map[string]Instance, len(unique))
	var resp Response
	for start := 0; start < len(unique); start += MaxDescribeIDs {
		chunk := unique[start:min(start+MaxDescribeIDs, len(unique))]
		var err error
		if resp, err = c.describeBatch(ctx, region, chunk, asked, out); err != nil {
			return nil, resp, fmt.Errorf("describe instances: %w", err)
		}
	}
	return out, resp, nil
}

// describeBatch describes the ids of one call, page after page, into out.
func (c *Client) describeBatch(ctx context.Context, region string, ids []string, asked map[string]bool, out map[string]Instance) (Response, error) {
	body, err := json.Marshal(struct {
		InstanceIDs []string `json:"instanceIds"`
	}{ids})
	if err != nil {
		return Response{}, err
	}
	var (
		resp       Response
		marker     string
		seenMarker = map[string]bool{"": true}
	)
	for pages := 1; ; pages++ {
		query, err := ListRequest{Marker: marker}.query()
		if err != nil {
			return resp, err
		}
		var payload []byte
		resp, payload, err = c.call(ctx, http.MethodPost, region, describeBatchPath, query, body, maxBatchResponseBytes, nil)
		if err != nil {
			return resp, err
		}
		if len(payload) > maxBatchResponseBytes {
			return resp, fmt.Errorf("page %d: the answer is larger than %d bytes", pages, maxBatchResponseBytes)
		}
		var page ListPage
		if err := json.Unmarshal(payload, &page); err != nil {
			return resp, fmt.Errorf("page %d: decode answer: %w", pages, err)
		}
		for _, in := range page.Instances {
			if asked[in.ID] {
				out[in.ID] = in
			}
		}
		if !page.IsTruncated {
			return resp, nil
		}
		switch {
		case page.NextMarker == "":
			return resp, fmt.Errorf("page %d says more follow but has no nextMarker", pages)
		case seenMarker[page.NextMarker]:
			return resp, fmt.Errorf("page %d points to marker %q again", pages, page.NextMarker)
		}
		seenMarker[page.NextMarker] = true
		marker = page.NextMarker
	}
}
