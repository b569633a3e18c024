package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/vault"
	"github.com/sealfs/sealfs/tpm"
)

// statusReport is `sealfs status --json`. Field names are an interface for
// scripts: add, never rename.
type statusReport struct {
	CipherDir string       `json:"cipher_dir"`
	Format    int          `json:"format"`
	VaultID   string       `json:"vault_id"`
	Created   time.Time    `json:"created"`
	Slots     []slotReport `json:"slots"`
	// The slot list is read before any key is known: it is authenticated
	// only when the vault is unlocked.
	Authenticated bool `json:"authenticated"`
	// HeaderProblems: damaged copies of the header, sync conflict copies
	// waiting to be merged; the next unlock repairs them.
	HeaderProblems []string   `json:"header_problems,omitempty"`
	Mount          *mountInfo `json:"mount,omitempty"` // where this machine has it mounted
	TPM            *tpmReport `json:"tpm,omitempty"`
	TPMError       string     `json:"tpm_error,omitempty"`
}

type slotReport struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"`
	Created time.Time `json:"created"`
	Label   string    `json:"label,omitempty"`
	ThisTPM *bool     `json:"this_tpm,omitempty"` // nil: TPM not reachable, unknown
	SRKName string    `json:"srk_name,omitempty"`
	PCRs    []int     `json:"pcrs,omitempty"`
	// Attempt-limited slots: MaxTries consecutive wrong passwords allowed,
	// TriesLeft of them remain (read from this TPM; absent for another's).
	MaxTries  uint32 `json:"max_tries,omitempty"`
	TriesLeft *int   `json:"tries_left,omitempty"`
	TPMError  string `json:"tpm_error,omitempty"` // e.g. the slot's NV index is gone
	// Guessing is what limits password guesses on this slot, for this
	// TPM's slots: "max_tries" (attempt-limited: N in all), "da_lockout"
	// (plain, and the lockout needs this TPM's lockout password to reset)
	// or "unlimited" (plain, and anyone who can use the TPM resets the
	// lockout).
	Guessing string `json:"guessing,omitempty"`
	// PCRsGuardPassword, on PCR-bound slots: false for slots sealed before
	// sealfs closed the password oracle (a new password re-seals them).
	PCRsGuardPassword *bool  `json:"pcrs_guard_password,omitempty"`
	Advice            string `json:"advice,omitempty"` // what to run about it
}

type tpmReport struct {
	Spec             string  `json:"spec"`
	Software         bool    `json:"software,omitempty"` // swtpm:DIR: as safe as DIR`
	SRKName          string  `json:"srk_name"`
	LockoutCounter   uint32  `json:"lockout_counter"`
	MaxTries         uint32  `json:"max_tries"`
	TriesLeft        uint32  `json:"tries_left"`
	InLockout        bool    `json:"in_lockout"`
	LockoutAuthSet   bool    `json:"lockout_auth_set"`
	IntervalSeconds  float64 `json:"lockout_interval_seconds"`
	RecoverySeconds  float64 `json:"lockout_recovery_seconds"`
	RecoveryInSecs   float64 `json:"time_to_recovery_seconds"` // upper bound until one more try is allowed
	CounterClearSecs float64 `json:"counter_clears_in_seconds"`
}

func (a *app) statusOrSlots(name, dir string, asJSON bool) error {
	v, err := a.loadVault(dir)
	if err != nil {
		return err
	}
	r := buildReport(v)
	if mp, ok := mountedAt(v.Dir); ok {
		r.Mount = mp
	}
	var srk []byte
	var info *tpm.LockoutInfo
	t, err := a.openTPM()
	if err != nil {
		r.TPMError = userMessage(err)
	} else if srk, err = t.SRKName(); err != nil {
		r.TPMError = err.Error()
	} else if li, err := t.Lockout(); err != nil {
		r.TPMError = err.Error()
	} else {
		info = &li
		if name == "status" {
			r.TPM = newTPMReport(a.tpmSpecShown(), srk, li)
			r.TPM.Software = t.Managed()
		}
	}
	if srk != nil {
		for i, s := range v.Header.Slots {
			if s.Type == crypto.SlotTPM {
				this := string(s.TPM.SRKName) == string(srk)
				r.Slots[i].ThisTPM = &this
				if this && vault.Limited(s.TPM) {
					slotTries(vault.FromTPM(t), s.TPM, &r.Slots[i])
				}
				if this {
					judgeSlot(&r.Slots[i], s.TPM, info, v.Dir)
				}
			}
		}
	}
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	if name == "status" {
		a.softwareTPMNote(t)
	}
	printReport(a.stdout, r, name == "status")
	return nil
}

func buildReport(v *vault.Vault) *statusReport {
	h := v.Header
	r := &statusReport{CipherDir: v.Dir, Format: h.Version, VaultID: hex.EncodeToString(h.VaultID), Created: h.Created,
		HeaderProblems: v.HeaderProblems()}
	for _, s := range h.Slots {
		sr := slotReport{ID: s.ID, Type: s.Type, Created: s.Created, Label: s.Label}
		if s.TPM != nil {
			sr.SRKName = hex.EncodeToString(s.TPM.SRKName)
			sr.PCRs = s.TPM.PCRs
			sr.MaxTries = s.TPM.MaxTries
		}
		r.Slots = append(r.Slots, sr)
	}
	return r
}

// judgeSlot says what limits guessing on one of this TPM's slots, and what
// to run when that is not enough.
func judgeSlot(r *slotReport, b *crypto.TPMBlob, info *tpm.LockoutInfo, dir string) {
	switch {
	case vault.Limited(b):
		r.Guessing = "max_tries"
	case info == nil:
	case info.LockoutAuthSet:
		r.Guessing = "da_lockout"
	default:
		r.Guessing = "unlimited"
		r.Advice = fmt.Sprintf("sealfs passwd --max-tries %d %s", defaultMaxTries, dir)
	}
	if len(b.PCRs) > 0 {
		guard := vault.PCRsGuardPassword(b)
		r.PCRsGuardPassword = &guard
		if !guard && r.Advice == "" {
			r.Advice = "sealfs passwd " + dir
		}
	}
}

func newTPMReport(spec string, srk []byte, info tpm.LockoutInfo) *tpmReport {
	tr := &tpmReport{
		Spec: spec, SRKName: hex.EncodeToString(srk),
		LockoutCounter: info.Counter, MaxTries: info.MaxTries, InLockout: info.InLockout, LockoutAuthSet: info.LockoutAuthSet,
		IntervalSeconds: info.Interval.Seconds(), RecoverySeconds: info.Recovery.Seconds(),
		CounterClearSecs: (time.Duration(info.Counter) * info.Interval).Seconds(),
	}
	if info.MaxTries > info.Counter {
		tr.TriesLeft = info.MaxTries - info.Counter
	}
	if info.InLockout {
		// The TPM forgets one failure per interval but does not say how much
		// of the current one has passed: report the bound.
		tr.RecoveryInSecs = info.Interval.Seconds()
	}
	return tr
}

func printReport(w io.Writer, r *statusReport, withTPM bool) {
	if withTPM {
		fmt.Fprintf(w, "vault:    %s (format %d, id %s, created %s)\n", r.CipherDir, r.Format, r.VaultID, r.Created.Format(time.DateOnly))
		if m := r.Mount; m != nil {
			ro := ""
			if m.ReadOnly {
				ro = " read-only"
			}
			fmt.Fprintf(w, "mounted:  at %s%s (unmount: sealfs unmount %s)", m.Mountpoint, ro, m.Mountpoint)
			if m.Log != "" {
				fmt.Fprintf(w, "; log %s", m.Log)
			}
			fmt.Fprintln(w)
		} else {
			fmt.Fprintln(w, "mounted:  no")
		}
		fmt.Fprintln(w, "slots (read without the key; authenticated only when unlocked):")
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tTYPE\tCREATED\tLABEL\tDETAILS")
	for _, s := range r.Slots {
		var d []string
		if s.Type == crypto.SlotTPM {
			switch {
			case s.ThisTPM == nil:
				d = append(d, "TPM "+short(s.SRKName))
			case *s.ThisTPM:
				d = append(d, "this TPM")
			default:
				d = append(d, "other TPM "+short(s.SRKName))
			}
			if len(s.PCRs) > 0 {
				d = append(d, fmt.Sprintf("PCRs %v", s.PCRs))
			}
			if s.MaxTries > 0 {
				d = append(d, triesDetail(s))
			}
			switch s.Guessing {
			case "unlimited":
				d = append(d, "plain slot: NO LIMIT on guessing (this TPM's lockout can be reset by anyone who can use it)")
			case "da_lockout":
				d = append(d, "plain slot: guessing throttled by the TPM's lockout")
			}
			if s.PCRsGuardPassword != nil && !*s.PCRsGuardPassword {
				d = append(d, "the password can be tried without these PCRs (sealed by an older sealfs)")
			}
			if s.TPMError != "" {
				d = append(d, s.TPMError)
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", s.ID, s.Type, s.Created.Format(time.DateOnly), s.Label, strings.Join(d, ", "))
	}
	tw.Flush()
	for _, p := range r.HeaderProblems {
		fmt.Fprintf(w, "  header: %s\n", p)
	}
	for _, s := range r.Slots {
		if s.Advice != "" {
			fmt.Fprintf(w, "  advice for %s: run `%s`\n", s.ID, s.Advice)
		}
	}
	if !withTPM {
		if r.TPMError != "" {
			fmt.Fprintf(w, "  (which slots are this TPM's is unknown: %s)\n", oneLine(r.TPMError))
		}
		return
	}
	switch {
	case r.TPM != nil:
		t := r.TPM
		fmt.Fprintf(w, "tpm:      %s (SRK %s)\n", t.Spec, short(t.SRKName))
		if t.LockoutAuthSet {
			fmt.Fprintln(w, "  lockout password: set; resetting the dictionary-attack lockout needs it")
		} else {
			fmt.Fprintln(w, "  lockout password: NONE; anyone who can use this TPM can reset its dictionary-attack lockout, "+
				"so the lockout below limits no one (attempt-limited slots do not depend on it)")
		}
		left := fmt.Sprintf("%d tries left", t.TriesLeft)
		if t.TriesLeft == 1 {
			left = "1 try left"
		}
		fmt.Fprintf(w, "  failed passwords counted: %d of %d (%s)\n", t.LockoutCounter, t.MaxTries, left)
		fmt.Fprintf(w, "  one failure forgotten every %s\n", secs(t.IntervalSeconds))
		if t.InLockout {
			fmt.Fprintf(w, "  LOCKED OUT: the next try is allowed in at most %s; or use `sealfs recover`\n", secs(t.RecoveryInSecs))
		} else if t.LockoutCounter > 0 {
			fmt.Fprintf(w, "  counter back to 0 in at most %s\n", secs(t.CounterClearSecs))
		}
		if hasLimited(r) {
			fmt.Fprintln(w, "  (this lockout does not apply to attempt-limited slots: the TPM counts their tries in their own NV index)")
		}
	case r.TPMError != "":
		fmt.Fprintf(w, "tpm:      unavailable: %s\n", r.TPMError)
	}
}

func short(h string) string {
	if len(h) > 12 {
		return h[len(h)-12:]
	}
	return h
}

func secs(s float64) string { return time.Duration(s * float64(time.Second)).String() }
