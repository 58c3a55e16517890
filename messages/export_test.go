package messages

// FastDecodeForTest runs both decoding paths on data: fast is nil when the
// fast path declined, full is nil when the full path refused the payload.
func FastDecodeForTest(data []byte) (fast, full *StopCommand) {
	var a, b StopCommand
	if fastDecode(data, &a) {
		fast = &a
	}
	if decodeCommandFields(data, &b) == nil {
		full = &b
	}
	return fast, full
}
