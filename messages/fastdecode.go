package messages

import "unicode/utf8"

// fastDecode decodes the common shape of a command — one flat object of
// known keys, strings without escapes, true or false — in a single pass
// without allocating more than the strings. It reports false for anything
// else (escapes, numbers, null, nesting, duplicate or unknown keys, syntax
// errors), and the caller then takes the full token-by-token path, which
// accepts exactly the same commands and words every error. The fuzz test
// FuzzFastDecodeAgrees holds the two paths to that.
func fastDecode(data []byte, cmd *StopCommand) bool {
	if len(data) > MaxCommandBytes || !utf8.Valid(data) {
		return false
	}
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	var seen uint16
	if i < len(data) && data[i] == '}' {
		return skipSpace(data, i+1) == len(data)
	}
	for {
		key, next, ok := plainString(data, i)
		if !ok {
			return false
		}
		i = skipSpace(data, next)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		i = skipSpace(data, i+1)
		var bit uint16
		switch string(key) { // no allocation: the compiler compares in place
		case "instanceId":
			bit = 1 << 0
		case "forceStop":
			bit = 1 << 1
		case "stopWithNoCharge":
			bit = 1 << 2
		case "waitUntilStopped":
			bit = 1 << 3
		case "commandId":
			bit = 1 << 4
		case "region":
			bit = 1 << 5
		case "notAfter":
			bit = 1 << 6
		case "reason":
			bit = 1 << 7
		case "requestedBy":
			bit = 1 << 8
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		const booleans = 1<<1 | 1<<2 | 1<<3
		if bit&booleans != 0 {
			v, next, ok := plainBool(data, i)
			if !ok {
				return false
			}
			switch bit {
			case 1 << 1:
				cmd.ForceStop = v
			case 1 << 2:
				cmd.StopWithNoCharge = v
			case 1 << 3:
				cmd.WaitUntilStopped = v
			}
			i = next
		} else {
			s, next, ok := plainString(data, i)
			if !ok {
				return false
			}
			switch bit {
			case 1 << 0:
				cmd.InstanceID = string(s)
			case 1 << 4:
				cmd.CommandID, cmd.commandIDSet = string(s), true
			case 1 << 5:
				cmd.Region, cmd.regionSet = string(s), true
			case 1 << 6:
				cmd.NotAfter, cmd.notAfterSet = string(s), true
			case 1 << 7:
				cmd.Reason = string(s)
			case 1 << 8:
				cmd.RequestedBy = string(s)
			}
			i = next
		}
		i = skipSpace(data, i)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return skipSpace(data, i+1) == len(data)
		default:
			return false
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// plainString reads a JSON string at data[i] that has no escapes and no
// control characters, returning its contents and the index after it.
func plainString(data []byte, i int) ([]byte, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return data[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

func plainBool(data []byte, i int) (bool, int, bool) {
	switch {
	case hasPrefixAt(data, i, "true"):
		return true, i + 4, true
	case hasPrefixAt(data, i, "false"):
		return false, i + 5, true
	}
	return false, 0, false
}

func hasPrefixAt(data []byte, i int, s string) bool {
	return len(data)-i >= len(s) && string(data[i:i+len(s)]) == s
}
