package fakebcc

import (
	"fmt"
	"strings"
)

// Attributes are what an instance is, beyond its state and tags, that
// decides how the real service answers calls about it. The zero value is
// a postpaid instance without local disks, of a type that may be stopped
// without charge, that the simulator's key may touch.
type Attributes struct {
	// Prepaid: paid in advance (describe shows paymentTiming Prepaid); a
	// stop with stopWithNoCharge is refused, 403
	// Bcc.PrePayCannotStopWithNoCharge.
	Prepaid bool
	// LocalDisk: the instance has local disks; a stop with
	// stopWithNoCharge is refused, 403 Bcc.Rocv1CannotStopWithNoCharge.
	LocalDisk bool
	// NoChargeUnsupported: the instance's type cannot be stopped without
	// charge; a stop with stopWithNoCharge is refused, 403
	// Bcc.InstanceTypeNotSupportException ("Shutdown no charge feature is
	// not available for this type of instance", as Baidu documents it).
	NoChargeUnsupported bool
	// Denied: the access key may not touch the instance; stop, describe
	// and a batch describe naming it answer 403 AccessDenied.
	Denied bool
}

// attributeNames are the names seed files and --attr give the attributes,
// as the JSON seed form spells them.
const attributeNames = "prepaid, localDisk, noChargeUnsupported or denied"

// set turns on the attribute called name.
func (a *Attributes) set(name string) error {
	switch name {
	case "prepaid":
		a.Prepaid = true
	case "localDisk":
		a.LocalDisk = true
	case "noChargeUnsupported":
		a.NoChargeUnsupported = true
	case "denied":
		a.Denied = true
	default:
		return fmt.Errorf("attribute %q: want %s", name, attributeNames)
	}
	return nil
}

// Or returns the attributes on in a or in b.
func (a Attributes) Or(b Attributes) Attributes {
	return Attributes{
		Prepaid:             a.Prepaid || b.Prepaid,
		LocalDisk:           a.LocalDisk || b.LocalDisk,
		NoChargeUnsupported: a.NoChargeUnsupported || b.NoChargeUnsupported,
		Denied:              a.Denied || b.Denied,
	}
}

// SetAttributes replaces the attributes of an existing instance; it fails
// for an unknown one.
func (s *Server) SetAttributes(id string, a Attributes) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return fmt.Errorf("instance %s does not exist: give it a status first", id)
	}
	in.attrs = a
	return nil
}

// Attributes returns the attributes of instance id, and whether it exists.
func (s *Server) Attributes(id string) (Attributes, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return Attributes{}, false
	}
	return in.attrs, true
}

// ParseAttributeAssignment reads the simulator's --attr syntax,
// "ID[,ID…]=NAME[,NAME…]", for example "i-abc=prepaid" or
// "i-a,i-b=localDisk,denied", and returns the ids and the attributes to
// turn on for each of them. Spaces around ids and names are ignored.
func ParseAttributeAssignment(s string) (ids []string, attrs Attributes, err error) {
	fail := func(format string, args ...any) ([]string, Attributes, error) {
		return nil, Attributes{}, fmt.Errorf("attribute assignment %q: %s", strings.TrimSpace(s), fmt.Sprintf(format, args...))
	}
	left, right, ok := strings.Cut(s, "=")
	if !ok {
		return fail("want ID[,ID…]=NAME[,NAME…] (NAME: %s)", attributeNames)
	}
	if ids, err = splitList(left); err != nil {
		return fail("instance ids: %v", err)
	}
	names, err := splitList(right)
	if err != nil {
		return fail("attribute names: %v", err)
	}
	for _, name := range names {
		if err := attrs.set(name); err != nil {
			return fail("%v", err)
		}
	}
	return ids, attrs, nil
}

// splitList splits a comma-separated list whose items may not be empty.
func splitList(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("none given")
	}
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			return nil, fmt.Errorf("an empty item")
		}
		out = append(out, item)
	}
	return out, nil
}
