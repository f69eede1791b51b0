//go:build !(linux || darwin || freebsd)

package coordinator

import "errors"

// freeBytes is not implemented here: the free-space guard stays off.
func freeBytes(string) (uint64, error) {
	return 0, errors.ErrUnsupported
}
