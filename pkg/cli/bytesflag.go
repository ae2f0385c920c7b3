package cli

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"
)

// bytesFlag is a size flag in bytes, written as a Kubernetes quantity
// ("256Mi", "1G", "0"), parsed once.
type bytesFlag uint64

// String prints the size as a quantity in binary units.
func (b *bytesFlag) String() string {
	return resource.NewQuantity(int64(*b), resource.BinarySI).String()
}

// Set parses a quantity; negative or fractional sizes are refused.
func (b *bytesFlag) Set(s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("%q is not a size: want a quantity like 256Mi or 1Gi", s)
	}
	v, ok := q.AsInt64()
	if !ok || v < 0 {
		return fmt.Errorf("%q: want a whole, non-negative number of bytes, like 256Mi", s)
	}
	*b = bytesFlag(v)
	return nil
}

// Type is shown in --help.
func (*bytesFlag) Type() string { return "size" }
