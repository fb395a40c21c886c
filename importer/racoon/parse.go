package racoon

import (
	"fmt"
	"path/filepath"
	"strings"
)

// maxIncludeDepth bounds nested include directives (racoon has no cycle check either).
const maxIncludeDepth = 8

// Pos is where a directive was written.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// Stmt is one racoon.conf directive: its words up to ';' or '{', and the block's
// directives if it has one. Quoted strings are one word without their quotes.
type Stmt struct {
	Pos    Pos
	Words  []string
	Block  []Stmt // nil for a simple directive
	Braced bool   // the directive had a { } block (Block may be empty)
}

// Name is the directive's first word ("" for an empty statement).
func (s Stmt) Name() string {
	if len(s.Words) == 0 {
		return ""
	}
	return s.Words[0]
}

// Text is the directive as written, without its block, for messages.
func (s Stmt) Text() string {
	t := strings.Join(s.Words, " ")
	if s.Braced {
		t += " { ... }"
	}
	return t
}

// token is one lexical element of racoon.conf.
type token struct {
	text   string
	quoted bool
	line   int
}

// lex splits racoon.conf (or setkey) text into words, quoted strings and the punctuation
// '{', '}', ';'. '#' starts a comment to the end of the line outside quotes.
func lex(src []byte) ([]token, error) {
	var toks []token
	line := 1
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '{' || c == '}' || c == ';':
			toks = append(toks, token{text: string(c), line: line})
			i++
		case c == '"':
			start, startLine := i+1, line
			i++
			for i < len(src) && src[i] != '"' {
				if src[i] == '\n' {
					line++
				}
				i++
			}
			if i >= len(src) {
				return nil, fmt.Errorf("line %d: quoted string not closed", startLine)
			}
			toks = append(toks, token{text: string(src[start:i]), quoted: true, line: startLine})
			i++
		default:
			start := i
			for i < len(src) && !strings.ContainsRune(" \t\r\n\f\v{};\"#", rune(src[i])) {
				i++
			}
			toks = append(toks, token{text: string(src[start:i]), line: line})
		}
	}
	return toks, nil
}

// parser turns tokens into statements.
type parser struct {
	file string
	toks []token
	i    int
}

// statements parses until '}' (nested) or the end of input (top level).
func (p *parser) statements(nested bool, openLine int) ([]Stmt, error) {
	out := []Stmt{}
	var cur *Stmt
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		p.i++
		if t.quoted {
			if cur == nil {
				cur = &Stmt{Pos: Pos{p.file, t.line}}
			}
			cur.Words = append(cur.Words, t.text)
			continue
		}
		switch t.text {
		case ";":
			if cur != nil {
				out = append(out, *cur)
				cur = nil
			}
		case "{":
			if cur == nil {
				return nil, fmt.Errorf("%s:%d: '{' without a directive before it", p.file, t.line)
			}
			block, err := p.statements(true, t.line)
			if err != nil {
				return nil, err
			}
			cur.Block, cur.Braced = block, true
			out = append(out, *cur)
			cur = nil
		case "}":
			if !nested {
				return nil, fmt.Errorf("%s:%d: '}' without a matching '{'", p.file, t.line)
			}
			if cur != nil {
				return nil, fmt.Errorf("%s:%d: %q has no ';' before '}'", p.file, cur.Pos.Line, strings.Join(cur.Words, " "))
			}
			return out, nil
		default:
			if cur == nil {
				cur = &Stmt{Pos: Pos{p.file, t.line}}
			}
			cur.Words = append(cur.Words, t.text)
		}
	}
	if nested {
		return nil, fmt.Errorf("%s:%d: '{' is never closed", p.file, openLine)
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: %q has no ';' at the end", p.file, cur.Pos.Line, strings.Join(cur.Words, " "))
	}
	return out, nil
}

// Parse parses racoon.conf text; name is used in positions and errors.
func Parse(name string, src []byte) ([]Stmt, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &parser{file: name, toks: toks}
	return p.statements(false, 0)
}

// ReadFunc reads a file named in an include directive.
type ReadFunc func(name string) ([]byte, error)

// ParseFile parses the racoon.conf at name and splices in the files its include directives
// name (racoon's glob patterns included), relative ones found in `path include` or else
// next to the including file. read is os.ReadFile outside tests.
func ParseFile(name string, read ReadFunc, glob func(string) ([]string, error)) ([]Stmt, error) {
	return parseFile(name, read, glob, "", 0)
}

func parseFile(name string, read ReadFunc, glob func(string) ([]string, error), includeDir string, depth int) ([]Stmt, error) {
	src, err := read(name)
	if err != nil {
		return nil, err
	}
	stmts, err := Parse(name, src)
	if err != nil {
		return nil, err
	}
	var out []Stmt
	for _, s := range stmts {
		if s.Name() == "path" && len(s.Words) == 3 && s.Words[1] == "include" {
			includeDir = s.Words[2]
		}
		if s.Name() != "include" || s.Braced {
			out = append(out, s)
			continue
		}
		if len(s.Words) != 2 {
			return nil, fmt.Errorf("%v: include wants one file name, found %q", s.Pos, s.Text())
		}
		if depth >= maxIncludeDepth {
			return nil, fmt.Errorf("%v: includes nested deeper than %d (a loop?)", s.Pos, maxIncludeDepth)
		}
		pattern := s.Words[1]
		if !filepath.IsAbs(pattern) {
			dir := filepath.Dir(name)
			if includeDir != "" {
				dir = filepath.Join(dir, includeDir) // an absolute includeDir stays itself
				if filepath.IsAbs(includeDir) {
					dir = includeDir
				}
			}
			pattern = filepath.Join(dir, pattern)
		}
		names, err := glob(pattern)
		if err != nil || len(names) == 0 {
			return nil, fmt.Errorf("%v: include %q: no such file", s.Pos, pattern)
		}
		for _, n := range names {
			inc, err := parseFile(n, read, glob, includeDir, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, inc...)
		}
	}
	return out, nil
}
