// Command neonwords checks (or, with -w, fills in) the WORD directives of
// the hand-written arm64 kernels: every line
//
//	WORD $0x4e22d420 // fadd v0.4s, v1.4s, v2.4s
//
// or, in the body of a #define (where a // comment would swallow the
// backslash that continues the line),
//
//	WORD $0x4e22d420 /* fadd v0.4s, v1.4s, v2.4s */ \
//
// must hold the encoding of the instruction in its comment, as LLVM's
// assembler (llvm-mc, Debian package llvm) gives it. Go's arm64 assembler
// has no mnemonics for most NEON floating-point instructions (FADD, FSUB,
// FMUL, FDIV, FCMGT, FCVTL, FCVTN on vectors), so the kernels emit them as
// words; this keeps each word tied to a readable, independently assembled
// instruction. Run by `make asm-check` when llvm-mc is installed.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

var (
	// wordLines are the two forms of a word line: the submatches are the
	// text before the word, the word, the text between the word and the
	// instruction, the instruction, and the text after it.
	wordLines = []*regexp.Regexp{
		regexp.MustCompile(`^(\s*WORD\s+\$)(0x[0-9a-fA-F]{8})(\s*//\s*)(.+?)()\s*$`),
		regexp.MustCompile(`^(\s*WORD\s+\$)(0x[0-9a-fA-F]{8})(\s*/\*\s*)(.+?)(\s*\*/\s*\\)\s*$`),
	}
	anyWord  = regexp.MustCompile(`^\s*WORD\s`)
	encoding = regexp.MustCompile(`encoding: \[0x([0-9a-f]{2}),0x([0-9a-f]{2}),0x([0-9a-f]{2}),0x([0-9a-f]{2})\]`)
)

func main() {
	write := flag.Bool("w", false, "rewrite the words from their comments instead of checking them")
	llvm := flag.String("llvm-mc", "llvm-mc", "the LLVM assembler")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("neonwords: ")
	bad := 0
	for _, path := range flag.Args() {
		n, err := run(path, *llvm, *write)
		if err != nil {
			log.Fatal(err)
		}
		bad += n
	}
	if bad > 0 {
		log.Fatalf("%d words differ from their instructions (run with -w to rewrite them)", bad)
	}
}

// wordLine returns the submatches of l as a word line, or nil.
func wordLine(l string) []string {
	for _, re := range wordLines {
		if m := re.FindStringSubmatch(l); m != nil {
			return m
		}
	}
	return nil
}

// run checks or rewrites the words of one file and returns how many
// differ from their comments.
func run(path, llvm string, write bool) (int, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	lines := strings.Split(string(src), "\n")
	var idx []int
	var asm bytes.Buffer
	for i, l := range lines {
		if m := wordLine(l); m != nil {
			idx = append(idx, i)
			fmt.Fprintln(&asm, m[4])
		} else if anyWord.MatchString(l) {
			return 0, fmt.Errorf("%s:%d: a WORD without its instruction in a comment of either form", path, i+1)
		}
	}
	if len(idx) == 0 {
		return 0, nil
	}
	cmd := exec.Command(llvm, "-triple=aarch64", "-mattr=+neon", "-show-encoding")
	cmd.Stdin = &asm
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("%s: %s: %v\n%s", path, llvm, err, stderr.Bytes())
	}
	encs := encoding.FindAllStringSubmatch(string(out), -1)
	if len(encs) != len(idx) {
		return 0, fmt.Errorf("%s: %d instructions, %d encodings from %s", path, len(idx), len(encs), llvm)
	}
	bad := 0
	for k, i := range idx {
		e := encs[k]
		v, _ := strconv.ParseUint(e[4]+e[3]+e[2]+e[1], 16, 32)
		want := fmt.Sprintf("0x%08x", v)
		m := wordLine(lines[i])
		if strings.EqualFold(m[2], want) {
			continue
		}
		if write {
			lines[i] = m[1] + want + m[3] + m[4] + m[5]
			continue
		}
		bad++
		fmt.Fprintf(os.Stderr, "%s:%d: WORD %s, but %q is %s\n", path, i+1, m[2], m[4], want)
	}
	if write {
		return 0, os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644)
	}
	return bad, nil
}
