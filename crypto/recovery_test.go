package crypto

import (
	"errors"
	"strings"
	"testing"
)

func TestRecoveryKeyFormat(t *testing.T) {
	r, _ := NewRecoveryKey()
	s := r.String()
	groups := strings.Split(s, "-")
	if len(groups) != 8 {
		t.Fatalf("%q: %d groups", s, len(groups))
	}
	digits := 0
	for _, g := range groups {
		digits += len(g) - 1
	}
	if digits != 64 {
		t.Errorf("%d data digits, want 64", digits)
	}
	for _, in := range []string{s, strings.ToUpper(s), strings.ReplaceAll(s, "-", " "), strings.ReplaceAll(s, "-", ""),
		" " + strings.Join(groups, " - ") + "\n"} {
		got, err := ParseRecoveryKey(in)
		if err != nil || got != r {
			t.Errorf("ParseRecoveryKey(%q): %v", in, err)
		}
	}
}

func TestRecoveryKeyTypoNamesGroup(t *testing.T) {
	r, _ := NewRecoveryKey()
	groups := r.Groups()
	for g := range groups {
		for pos := 0; pos < 9; pos++ {
			for _, c := range hexDigits {
				if byte(c) == groups[g][pos] {
					continue
				}
				bad := append([]string(nil), groups...)
				bad[g] = groups[g][:pos] + string(c) + groups[g][pos+1:]
				_, err := ParseRecoveryKey(strings.Join(bad, "-"))
				var re *RecoveryKeyError
				if !errors.As(err, &re) || re.Group != g+1 || !errors.Is(err, ErrRecoveryKeyTypo) {
					t.Fatalf("substitution in group %d pos %d: %v", g+1, pos, err)
				}
			}
		}
	}
	// Adjacent transpositions inside a group are caught unless the digits
	// are equal or are the Luhn blind pair (0 and f for mod 16).
	g := groups[2]
	for pos := 0; pos < 8; pos++ {
		a, b := g[pos], g[pos+1]
		if a == b || (a == '0' && b == 'f') || (a == 'f' && b == '0') {
			continue
		}
		bad := append([]string(nil), groups...)
		bad[2] = g[:pos] + string(b) + string(a) + g[pos+2:]
		if _, err := ParseRecoveryKey(strings.Join(bad, "")); err == nil {
			t.Errorf("transposition at %d not detected", pos)
		}
	}
	// Groups typed in the wrong order.
	sw := append([]string(nil), groups...)
	sw[0], sw[1] = sw[1], sw[0]
	if _, err := ParseRecoveryKey(strings.Join(sw, "")); err == nil {
		t.Error("swapped groups not detected")
	}
	if _, err := ParseRecoveryKey("1234"); !errors.Is(err, ErrRecoveryKeyTypo) {
		t.Errorf("short key: %v", err)
	}
	if _, err := ParseRecoveryKey(strings.Replace(r.String(), groups[4][:1], "x", 1)); err == nil {
		t.Error("non-hex character accepted")
	}
}

func TestWrongRecoveryKey(t *testing.T) {
	h, _, _, _ := testHeader(t)
	other, _ := NewRecoveryKey()
	s, _ := h.Slot("recovery")
	if _, err := OpenRecoverySlot(s, other, h.VaultID); !errors.Is(err, ErrWrongRecoveryKey) ||
		err.Error() != "this recovery key does not open this vault" {
		t.Errorf("wrong key: %v", err)
	}
}
