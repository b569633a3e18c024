package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// sealfs(1) and the shell completions are generated from the command tree
// and committed under dist/, so that packagers and `make install`-less
// users have them without running anything. This test fails when they are
// stale; regenerate with
//
//	go test ./cmd/sealfs -run TestGeneratedDocs -update
var update = flag.Bool("update", false, "rewrite dist/man and dist/completion from the command tree")

//go:generate go test -run TestGeneratedDocs -update .

// generatedDocs returns every generated file by its path from the
// repository's top.
func generatedDocs(t *testing.T) map[string][]byte {
	t.Helper()
	root := newApp(nil, io.Discard, io.Discard).newRootCommand()
	out := map[string][]byte{"dist/man/sealfs.1": md2man.Render(manMarkdown(root))}
	var b bytes.Buffer
	for path, gen := range map[string]func(io.Writer) error{
		"dist/completion/sealfs.bash": func(w io.Writer) error { return root.GenBashCompletionV2(w, true) },
		"dist/completion/_sealfs":     root.GenZshCompletion,
		"dist/completion/sealfs.fish": func(w io.Writer) error { return root.GenFishCompletion(w, true) },
	} {
		b.Reset()
		if err := gen(&b); err != nil {
			t.Fatal(err)
		}
		out[path] = bytes.Clone(b.Bytes())
	}
	return out
}

func TestGeneratedDocs(t *testing.T) {
	for path, want := range generatedDocs(t) {
		full := filepath.Join("..", "..", path)
		if *update {
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(full)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not what the command tree generates (%v): run `go test ./cmd/sealfs -run TestGeneratedDocs -update`", path, err)
		}
	}
}

// The man page is valid roff: groff renders it without a warning, and it
// has the sections a man page is expected to have.
func TestManPageRenders(t *testing.T) {
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("groff not installed (Debian: groff-base)")
	}
	page := generatedDocs(t)["dist/man/sealfs.1"]
	cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-rLL=100n")
	cmd.Stdin = bytes.NewReader(page)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("groff: %v\n%s", err, stderr.String())
	}
	text := stripOverstrike(out.String())
	for _, want := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "ENVIRONMENT", "FILES",
		"MOUNT OPTIONS", "RECOVERY KEY", "SEE ALSO", "sealfs mount CIPHERDIR MOUNTPOINT", "--password-file FILE",
		"72 characters", "x-systemd.automount"} {
		if !strings.Contains(text, want) {
			t.Errorf("the rendered man page lacks %q", want)
		}
	}
	if strings.Contains(text, "--daemon") {
		t.Error("the man page shows the internal --daemon flag")
	}
}

// stripOverstrike removes groff's bold/underline escapes (x\bx, _\bx).
func stripOverstrike(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i := 0; i < len(r); i++ {
		if i+2 < len(r) && r[i+1] == '\b' {
			continue
		}
		if r[i] == '\b' {
			continue
		}
		b.WriteRune(r[i])
	}
	s = b.String()
	for _, esc := range []string{"\x1b[1m", "\x1b[0m", "\x1b[4m", "\x1b[22m", "\x1b[24m"} {
		s = strings.ReplaceAll(s, esc, "")
	}
	return s
}

// manMarkdown is sealfs(1) in go-md2man's markdown: NAME, SYNOPSIS,
// DESCRIPTION, COMMANDS (each with its description and flags), one section
// per help topic, EXAMPLES, SEE ALSO.
func manMarkdown(root *cobra.Command) []byte {
	var b strings.Builder
	b.WriteString(`% "SEALFS" "1" "" "sealfs" "User Commands"` + "\n\n")
	fmt.Fprintf(&b, "# NAME\nsealfs \\- %s\n\n", root.Short)
	b.WriteString("# SYNOPSIS\n")
	var cmds []*cobra.Command
	for _, c := range root.Commands() {
		if c.IsAvailableCommand() && c.Runnable() || c.Name() == "completion" {
			cmds = append(cmds, c)
		}
	}
	for _, c := range cmds {
		fmt.Fprintf(&b, "**sealfs %s** [*flags*]%s\n\n", c.Name(), italicArgs(c))
	}
	b.WriteString("**sealfs** *CIPHERDIR* *MOUNTPOINT* **-o** *OPTIONS* (as mount(8)'s helper)\n\n")
	fmt.Fprintf(&b, "# DESCRIPTION\n%s\n\n", toMarkdown(root.Long))
	b.WriteString("# COMMANDS\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "## sealfs %s%s\n", c.Name(), italicArgs(c))
		long := c.Long
		if long == "" {
			long = c.Short
		}
		if len(c.Aliases) > 0 {
			long += "\n\nAlso called: " + strings.Join(c.Aliases, ", ") + "."
		}
		b.WriteString(toMarkdown(long) + "\n\n")
		flags(&b, c.LocalFlags())
		if c.Example != "" {
			b.WriteString("Examples:\n\n```\n" + c.Example + "\n```\n\n")
		}
	}
	for _, tp := range topics {
		fmt.Fprintf(&b, "# %s\n%s\n\n", tp.title, toMarkdown(tp.long))
	}
	fmt.Fprintf(&b, "# EXAMPLES\n```\n%s\n```\n\n", root.Example)
	b.WriteString("# SEE ALSO\n**mount.fuse3**(8), **fstab**(5), **systemd.mount**(5), **systemd.exec**(5), **swtpm**(8), " +
		"**fusermount3**(1), **restic**(1), **borg**(1), **rsync**(1)\n\n" +
		"The user guide, docs/guide.md, and the on-disk format, docs/format.md, in the sealfs sources.\n")
	return []byte(b.String())
}

// italicArgs is the positional part of a command's Use line, each word
// in italics.
func italicArgs(c *cobra.Command) string {
	var out []string
	for _, w := range strings.Fields(strings.TrimPrefix(c.Use, c.Name())) {
		opt := strings.HasPrefix(w, "[")
		w = strings.Trim(w, "[]")
		if opt {
			out = append(out, "[*"+w+"*]")
		} else {
			out = append(out, "*"+w+"*")
		}
	}
	if len(out) == 0 {
		return ""
	}
	return " " + strings.Join(out, " ")
}

// flags renders a flag set as a definition list, --help left out.
func flags(b *strings.Builder, fs *pflag.FlagSet) {
	first := true
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Name == "help" {
			return
		}
		if first {
			b.WriteString("Flags:\n\n")
			first = false
		}
		name, usage := pflag.UnquoteUsage(f)
		term := "**--" + f.Name + "**"
		if f.Shorthand != "" {
			term = "**-" + f.Shorthand + "**, " + term
		}
		if name != "" {
			term += " *" + name + "*"
		}
		fmt.Fprintf(b, "%s\n: %s\n\n", term, escapeMarkdown(usage))
	})
}

// toMarkdown turns help text into markdown: plain lines are paragraphs
// (escaped), indented lines are kept as they are in a code block.
func toMarkdown(text string) string {
	lines := strings.Split(text, "\n")
	var out []string
	code := false
	for i, l := range lines {
		indented := strings.HasPrefix(l, " ")
		switch {
		case l == "" && code:
			next := ""
			for _, n := range lines[i+1:] {
				if n != "" {
					next = n
					break
				}
			}
			if strings.HasPrefix(next, " ") {
				out = append(out, "")
				continue
			}
			out = append(out, "```", "")
			code = false
		case indented && !code:
			out = append(out, "", "```", l)
			code = true
		case indented:
			out = append(out, l)
		case code:
			out = append(out, "```", "", escapeMarkdown(l))
			code = false
		default:
			out = append(out, escapeMarkdown(l))
		}
	}
	if code {
		out = append(out, "```")
	}
	return strings.Join(out, "\n")
}

// escapeMarkdown keeps help text literal, except `code`.
func escapeMarkdown(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "*", `\*`, "_", `\_`, "<", `\<`, "[", `\[`, "#", `\#`)
	return r.Replace(s)
}
