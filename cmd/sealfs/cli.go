package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The command line is a cobra tree (cli_commands.go): per-command help
// with synopsis, description and only the flags that apply; GNU flags
// everywhere; shell completions; sealfs(1) generated from the same
// definitions (gendocs_test.go writes dist/man and dist/completion and checks
// they are current).

// version is set at build time with -ldflags "-X main.version=...";
// otherwise the module version go install recorded, else "dev".
var version = ""

func versionString() string {
	v := version
	if v == "" {
		v = "dev"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	return fmt.Sprintf("sealfs %s (%s, %s/%s)", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

const helpTemplate = `{{if .HasAvailableSubCommands}}Usage: {{.CommandPath}} COMMAND [flags] [ARGS]
       {{.CommandPath}} COMMAND --help

{{else if .Runnable}}Usage: {{.UseLine}}

{{end}}{{with (or .Long .Short)}}{{. | trimTrailingWhitespaces}}
{{end}}{{if gt (len .Aliases) 0}}
Aliases: {{.NameAndAliases}}
{{end}}{{if .HasAvailableSubCommands}}
Commands:{{range .Commands}}{{if .IsAvailableCommand}}
  {{rpad .Name 14}} {{.Short}}{{end}}{{end}}
{{end}}{{if .HasAvailableLocalFlags}}
Flags:
{{.LocalFlags.FlagUsagesWrapped 100 | trimTrailingWhitespaces}}
{{end}}{{if .HasExample}}
Examples:
{{.Example}}
{{end}}{{if .HasHelpSubCommands}}
Help topics ({{.CommandPath}} help TOPIC):{{range .Commands}}{{if .IsAdditionalHelpTopicCommand}}
  {{rpad .Name 14}} {{.Short}}{{end}}{{end}}
{{end}}`

// newRootCommand builds the whole tree, its flags bound to a.
func (a *app) newRootCommand() *cobra.Command {
	var showVersion bool
	cobra.EnableCommandSorting = false // help lists commands in the order of a vault's life
	root := &cobra.Command{
		Use:   "sealfs",
		Short: "an encrypted folder for backups whose key sits in the TPM behind your password",
		Long:  rootLong,
		Example: `  sealfs init ~/Dropbox/backup.sealfs
  sealfs mount ~/Dropbox/backup.sealfs ~/backup
  restic -r ~/backup/restic backup ~/Documents
  sealfs unmount ~/backup`,
		Args:          cobra.ArbitraryArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			a.log = newLogger(a.stderr, a.debug)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if showVersion {
				fmt.Fprintln(a.stdout, versionString())
				return nil
			}
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			cmd.SetOut(a.stderr)
			_ = cmd.Help()
			return &codedError{code: exitUsage}
		},
	}
	root.Flags().BoolVar(&showVersion, "version", false, "print the version and exit")
	root.SetHelpTemplate(helpTemplate)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{msg: prefixed(c, err.Error()), cmd: c.CommandPath()}
	})
	root.CompletionOptions.HiddenDefaultCmd = false
	for _, c := range a.commands() {
		c.Flags().SortFlags = false
		root.AddCommand(c)
	}
	root.AddCommand(helpTopics()...)
	root.SetHelpCommand(a.helpCommand(root))
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		c.SilenceUsage, c.SilenceErrors = true, true
		if c.Name() == "completion" {
			c.Use = "completion SHELL"
			c.Short = "print a shell completion script: bash, zsh, fish or powershell"
			// A shell sealfs has no script for is a usage error, not help.
			c.Args = positional(1, 1)
			c.RunE = func(cmd *cobra.Command, args []string) error {
				return &usageError{msg: fmt.Sprintf("completion: no script for %q; want bash, zsh, fish or powershell", args[0]), cmd: cmd.CommandPath()}
			}
		}
	}
	return root
}

// helpCommand is `sealfs help [COMMAND or TOPIC]`; an unknown name is a
// usage error (cobra's own prints the whole help and exits 0).
func (a *app) helpCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [COMMAND or TOPIC]",
		Short: "help about a command or a topic",
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 || (len(args) > 0 && target == root) {
				return &usageError{msg: fmt.Sprintf("help: no command or help topic %q", strings.Join(args, " ")), cmd: "sealfs help"}
			}
			target.SetOut(a.stdout)
			return target.Help()
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			var names []string
			for _, c := range root.Commands() {
				if c.IsAvailableCommand() || c.IsAdditionalHelpTopicCommand() {
					names = append(names, c.Name())
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
	}
}

// unknownCommand is a usage error with cobra's suggestions.
func unknownCommand(root *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q", name)
	if s := root.SuggestionsFor(name); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return &usageError{msg: msg}
}

// positional returns a cobra.Args that wants between min and max (-1: any)
// positional arguments, named in the command's Use line.
func positional(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= min && (max < 0 || len(args) <= max) {
			return nil
		}
		want := strings.TrimSpace(strings.TrimPrefix(cmd.Use, cmd.Name()))
		got := "none"
		if len(args) > 0 {
			got = strings.Join(args, " ")
		}
		msg := fmt.Sprintf("want %s, got %s", want, got)
		if max == 0 {
			msg = "takes no arguments, got " + got
		}
		return &usageError{msg: prefixed(cmd, msg), cmd: cmd.CommandPath()}
	}
}

// prefixed puts the command's name (not the program's: exit adds that)
// before a usage message.
func prefixed(c *cobra.Command, msg string) string {
	if !c.HasParent() {
		return msg
	}
	return strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ") + ": " + msg
}

// moveLeadingFlags lets flags come before the command name, as in
// `sealfs --tpm swtpm:DIR --password-file F mount …` (scripts, demo/run and
// bench/run do): they are moved after it, where that command parses them.
// A flag given there that the command does not take (--password-file
// before status) is dropped, as the old global flags were ignored where
// they did not apply; after the command name it is an error.
func moveLeadingFlags(root *cobra.Command, args []string) ([]string, error) {
	takesValue := flagArity(root)
	type leading struct {
		name string
		args []string
	}
	var lead []leading
	for i := 0; i < len(args); i++ {
		s := args[i]
		name := ""
		switch {
		case s == "--":
			return args, nil
		case strings.HasPrefix(s, "--"):
			name, _, _ = strings.Cut(s[2:], "=")
		case strings.HasPrefix(s, "-") && len(s) > 1:
			name = s[1:2]
		}
		if name != "" {
			l := leading{name: name, args: []string{s}}
			if !strings.Contains(s, "=") && len(s) <= 2+len(name) && takesValue[name] && i+1 < len(args) {
				i++
				l.args = append(l.args, args[i])
			}
			lead = append(lead, l)
			continue
		}
		if i == 0 {
			return args, nil
		}
		c, _, err := root.Find([]string{s})
		if err != nil || c == root {
			return nil, unknownCommand(root, s)
		}
		out := []string{s}
		for _, l := range lead {
			known := c.Flags().Lookup(l.name) != nil || len(l.name) == 1 && c.Flags().ShorthandLookup(l.name) != nil
			if _, inTree := takesValue[l.name]; known || !inTree || l.name == "h" || l.name == "help" {
				out = append(out, l.args...)
			}
		}
		return append(out, args[i+1:]...), nil
	}
	return args, nil
}

// flagArity maps every flag name and shorthand in the tree to whether it
// takes a value.
func flagArity(root *cobra.Command) map[string]bool {
	m := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			v := f.NoOptDefVal == ""
			m[f.Name] = v
			if f.Shorthand != "" {
				m[f.Shorthand] = v
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return m
}

// isCommandName reports a sealfs command, to name another sealfs process
// by its command line (app.openTPMSpec's waiting line).
func isCommandName(s string) bool {
	switch s {
	case "init", "mount", "unmount", "lock", "status", "slots", "mounts", "passwd", "recover", "enroll", "revoke", "fsck", "extract":
		return true
	}
	return false
}
