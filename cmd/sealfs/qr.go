package main

import (
	"fmt"
	"io"
	"strings"

	"rsc.io/qr"
)

// writeQR renders text as a QR code with Unicode half blocks: each character
// cell holds two module rows (upper half block = top light, lower = bottom
// light), which keeps the code square in a terminal. Light modules are drawn
// as block characters so the code reads on the usual dark-background
// terminal; phone scanners also accept the inverted form on light ones.
func writeQR(w io.Writer, text string) error {
	// Upper case hex and dashes fit QR's alphanumeric mode: a smaller code.
	c, err := qr.Encode(strings.ToUpper(text), qr.M)
	if err != nil {
		return fmt.Errorf("QR code: %w", err)
	}
	const quiet = 2 // modules of light margin; spec asks 4, 2 scans fine on screens
	light := func(x, y int) bool {
		if x < 0 || y < 0 || x >= c.Size || y >= c.Size {
			return true
		}
		return !c.Black(x, y)
	}
	var b strings.Builder
	for y := -quiet; y < c.Size+quiet; y += 2 {
		b.WriteString("    ")
		for x := -quiet; x < c.Size+quiet; x++ {
			top, bottom := light(x, y), light(x, y+1)
			switch {
			case top && bottom:
				b.WriteRune('█')
			case top:
				b.WriteRune('▀')
			case bottom:
				b.WriteRune('▄')
			default:
				b.WriteRune(' ')
			}
		}
		b.WriteByte('\n')
	}
	_, err = io.WriteString(w, b.String())
	return err
}
