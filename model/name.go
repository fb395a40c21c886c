package model

import (
	"fmt"
	"strings"
)

// MatchName finds name, as an operator typed it, among names: the exact name, or else the
// one name equal to it but for case. what says what is named ("connection") for the error,
// which lists the names there are.
func MatchName(what, name string, names []string) (string, error) {
	var folded []string
	for _, n := range names {
		if n == name {
			return n, nil
		}
		if strings.EqualFold(n, name) {
			folded = append(folded, n)
		}
	}
	switch len(folded) {
	case 1:
		return folded[0], nil
	case 0:
		return "", fmt.Errorf("no %s %q (configured: %s)", what, name, listOrNone(names))
	}
	return "", fmt.Errorf("%s %q is ambiguous: %s differ only in case (want the name exactly)",
		what, name, strings.Join(folded, ", "))
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
