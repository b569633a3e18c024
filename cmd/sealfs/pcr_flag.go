package main

import (
	"fmt"
	"strconv"
	"strings"
)

// pcrList is a --pcr flag value: "7", "0,7" or "0+7".
type pcrList []int

func (p *pcrList) String() string {
	s := make([]string, len(*p))
	for i, v := range *p {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (p *pcrList) Set(v string) error {
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '+' || r == ' ' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n > 23 {
			return fmt.Errorf("PCR %q: want a number 0-23", f)
		}
		*p = append(*p, n)
	}
	return nil
}

func (p *pcrList) Type() string { return "PCRS" }
