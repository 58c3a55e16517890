package bulkstop

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/messages"
)

// ParseTagFilters reads the values of `bccstop stop --tag`: "KEY=VALUE"
// selects instances whose tag KEY has that value, "KEY" alone those with
// tag KEY whatever its value. Filters on different keys are ANDed; several
// values for one key are alternatives (as the list API treats them, see
// bcc.Instance.HasTags). The value is everything after the first '=', so it
// may hold '='. A filter given twice counts once. Every bad value is
// reported, quoted, in one error: an empty key, "KEY=" (use KEY alone), a
// ',' or ':' (the list API's separators), a control character, or spaces
// around a key or value (tags compare exactly, so they would hardly ever be
// meant). No args gives no filters and no error.
func ParseTagFilters(args []string) ([]bcc.Tag, error) {
	var (
		out []bcc.Tag
		bad []string
	)
	for _, arg := range args {
		tag, err := parseTagFilter(arg)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("--tag %q: %v", truncate(arg, 70), err))
		case !slices.Contains(out, tag):
			out = append(out, tag)
		}
	}
	switch len(bad) {
	case 0:
		return out, nil
	case 1:
		return nil, errors.New(bad[0])
	}
	return nil, fmt.Errorf("%d invalid --tag values:\n  %s", len(bad), strings.Join(bad, "\n  "))
}

func parseTagFilter(arg string) (bcc.Tag, error) {
	key, value, hasValue := strings.Cut(arg, "=")
	tag := bcc.Tag{Key: key, Value: value}
	switch {
	case arg == "":
		return tag, errors.New("empty; want KEY=VALUE or KEY")
	case key == "":
		return tag, errors.New("empty key; want KEY=VALUE or KEY")
	case hasValue && value == "":
		return tag, errors.New("empty value; write KEY alone to match any value")
	case !hasValue && strings.Contains(key, ":"):
		return tag, errors.New(`":" is not allowed; want KEY=VALUE or KEY`)
	case strings.TrimFunc(key, unicode.IsSpace) != key || strings.TrimFunc(value, unicode.IsSpace) != value:
		return tag, errors.New("space around the key or the value; tags compare exactly")
	}
	if err := tag.CheckFilter(); err != nil {
		return tag, err
	}
	return tag, nil
}

// Lister lists every instance matching a tag filter, following all pages.
// *bcc.Client is one.
type Lister interface {
	ListAllInstances(ctx context.Context, r bcc.ListRequest) ([]bcc.Instance, error)
}

// TargetQuery says which instances a bulk stop is for.
type TargetQuery struct {
	// IDs are instances named explicitly, in the order given (for example
	// IDList.IDs from ParseIDs); each must be a valid instance id.
	IDs []string
	// Tags, from ParseTagFilters, select instances with the list API; none
	// means no listing.
	Tags []bcc.Tag
	// Region is the region whose endpoint is listed ("" for the default).
	Region string
	// Protected instances are never targeted (BCCSTOP_PROTECTED_INSTANCES,
	// already split; spaces around entries and empty entries are ignored).
	Protected []string
}

// Target is one instance to stop.
type Target struct {
	ID    string
	ByID  bool // named explicitly
	ByTag bool // returned by the tag listing, and carrying the tags
	// Instance is what the listing said of it (name, status, tags) when it
	// was listed; otherwise only ID is set.
	Instance bcc.Instance
}

// SkipReason says why an instance found is not a target.
type SkipReason string

// Reasons for skipping.
const (
	// SkipProtected: the instance is in TargetQuery.Protected.
	SkipProtected SkipReason = "protected"
	// SkipTagMismatch: the listing returned an instance that does not carry
	// the tags asked for, by bcc.Instance.HasTags. bccstop stops only what
	// it can see matches rather than trust a filter it did not apply.
	SkipTagMismatch SkipReason = "tag-mismatch"
	// SkipInvalidID: the listing returned an id that is not an instance id
	// (i-…), which no command could carry.
	SkipInvalidID SkipReason = "invalid-id"
)

// Skip is an instance found but not targeted.
type Skip struct {
	ID     string
	Reason SkipReason
	Detail string // a sentence for the operator
}

// Resolution is what ResolveTargets found.
type Resolution struct {
	// Targets, each once: first the explicit ids in the order given, then
	// those only the listing found, by id.
	Targets []Target
	// Skipped, in the same order.
	Skipped []Skip
	// FoundByID counts the distinct explicit ids; FoundByTag the instances
	// the listing returned (skipped ones included); FoundByBoth those
	// counted in both.
	FoundByID, FoundByTag, FoundByBoth int
}

// IDs returns the ids of the targets, in order.
func (r Resolution) IDs() []string {
	ids := make([]string, len(r.Targets))
	for i, t := range r.Targets {
		ids[i] = t.ID
	}
	return ids
}

// ResolveTargets turns explicit ids and tag filters into the instances to
// stop. With tags it lists the instances once through l (which may be nil
// when there are none); an explicit id is a target whatever its tags; an
// instance found both ways is targeted once; a protected instance, a listed
// instance that does not carry the tags, and a listed id that is not an
// instance id are skipped, each with its reason. It fails when there is
// nothing to resolve (no ids and no tags), for an invalid explicit id or tag
// filter, and when the listing fails (the error wraps the client's, so
// bcc.Classify still applies). Tags matching nothing give no targets and no
// error: the caller decides whether that is a failure.
func ResolveTargets(ctx context.Context, l Lister, q TargetQuery) (Resolution, error) {
	var res Resolution
	if len(q.IDs) == 0 && len(q.Tags) == 0 {
		return res, errors.New("no targets: give instance ids, or tags to list instances by")
	}
	var bad []string
	for _, id := range q.IDs {
		if !messages.ValidInstanceID(id) {
			bad = append(bad, fmt.Sprintf("%q", truncate(id, 70)))
		}
	}
	if len(bad) > 0 {
		return res, fmt.Errorf("not instance ids: %s (%s)", strings.Join(bad, ", "), messages.InstanceIDForm)
	}
	for _, t := range q.Tags {
		if err := t.CheckFilter(); err != nil {
			return res, err
		}
	}
	var listed []bcc.Instance
	if len(q.Tags) > 0 {
		if l == nil {
			return res, errors.New("tags given but no way to list instances")
		}
		var err error
		if listed, err = l.ListAllInstances(ctx, bcc.ListRequest{Region: q.Region, Tags: q.Tags}); err != nil {
			return res, fmt.Errorf("list instances tagged %s: %w", tagsString(q.Tags), err)
		}
	}

	protected := map[string]bool{}
	for _, id := range q.Protected {
		if id = strings.TrimSpace(id); id != "" {
			protected[id] = true
		}
	}
	byTag := make(map[string]bcc.Instance, len(listed))
	for _, in := range listed {
		if _, dup := byTag[in.ID]; !dup {
			byTag[in.ID] = in
		}
	}
	res.FoundByTag = len(byTag)
	done := map[string]bool{}
	skip := func(id string, reason SkipReason, detail string) {
		res.Skipped = append(res.Skipped, Skip{ID: id, Reason: reason, Detail: detail})
	}

	for _, id := range q.IDs {
		if done[id] {
			continue
		}
		done[id] = true
		res.FoundByID++
		in, listedToo := byTag[id]
		if listedToo {
			res.FoundByBoth++
		} else {
			in = bcc.Instance{ID: id}
		}
		if protected[id] {
			skip(id, SkipProtected, "listed in BCCSTOP_PROTECTED_INSTANCES")
			continue
		}
		res.Targets = append(res.Targets, Target{ID: id, ByID: true, ByTag: listedToo && in.HasTags(q.Tags), Instance: in})
	}

	rest := make([]string, 0, len(byTag))
	for id := range byTag {
		if !done[id] {
			rest = append(rest, id)
		}
	}
	slices.Sort(rest)
	for _, id := range rest {
		in := byTag[id]
		switch {
		case !messages.ValidInstanceID(id):
			skip(id, SkipInvalidID, "the list API returned an id that is not an instance id")
		case !in.HasTags(q.Tags):
			skip(id, SkipTagMismatch, fmt.Sprintf("the list API returned it, but its tags (%s) do not match %s", tagsString(in.Tags), tagsString(q.Tags)))
		case protected[id]:
			skip(id, SkipProtected, "listed in BCCSTOP_PROTECTED_INSTANCES")
		default:
			res.Targets = append(res.Targets, Target{ID: id, ByTag: true, Instance: in})
		}
	}
	return res, nil
}

// tagsString shows tags as the --tag flag takes them: "env=staging team".
func tagsString(tags []bcc.Tag) string {
	if len(tags) == 0 {
		return "none"
	}
	parts := make([]string, len(tags))
	for i, t := range tags {
		parts[i] = t.String()
	}
	return strings.Join(parts, " ")
}
