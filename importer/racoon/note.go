// Package racoon converts a racoon (ipsec-tools) setup — racoon.conf with its include files,
// the psk.txt it names and setkey's policies (ipsec-tools.conf) — into espgw connections.
// What it cannot carry over, and what it carries over with a different meaning, it reports
// as Notes naming file and line.
package racoon

import "fmt"

// Kind says what happened to a directive.
type Kind uint8

const (
	Unmapped Kind = iota + 1 // espgw has no equivalent: the directive is dropped
	Changed                  // mapped, but espgw's setting behaves differently
)

// Note is one remark about a directive of the input.
type Note struct {
	Pos       Pos
	Directive string // as written (never a key)
	Kind      Kind
	Reason    string
}

func (n Note) String() string {
	what := "not mapped"
	if n.Kind == Changed {
		what = "mapped differently"
	}
	return fmt.Sprintf("%v: %s: %s: %s", n.Pos, n.Directive, what, n.Reason)
}

// notes collects Notes.
type notes []Note

func (ns *notes) unmapped(s Stmt, format string, args ...any) {
	*ns = append(*ns, Note{Pos: s.Pos, Directive: s.Text(), Kind: Unmapped, Reason: fmt.Sprintf(format, args...)})
}

func (ns *notes) changed(s Stmt, format string, args ...any) {
	*ns = append(*ns, Note{Pos: s.Pos, Directive: s.Text(), Kind: Changed, Reason: fmt.Sprintf(format, args...)})
}
