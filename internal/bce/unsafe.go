package bce

import "unsafe"

// unsafeString views b as a string without copying. The caller must not
// modify b while the string is in use; the signer only uses it to sort
// header names that live in its scratch buffer until the signature is done.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
