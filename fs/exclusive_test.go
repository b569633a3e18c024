package fs

import "testing"

func TestParseMountinfo(t *testing.T) {
	for _, c := range []struct{ line, mp, typ, src string }{
		{`36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue`, "/mnt/parent", "ext3", "/dev/root"},
		{`100 29 0:52 / /tmp/a\040b rw,nosuid,nodev,relatime - fuse.sealfs /home/u/Dropbox/my\040vault rw,user_id=0`, "/tmp/a b", "fuse.sealfs", "/home/u/Dropbox/my vault"},
		{`100 29 0:52 / /m rw shared:5 master:7 - fuse.sealfs /c\134d rw`, "/m", "fuse.sealfs", `/c\d`},
	} {
		mp, typ, src, ok := parseMountinfo(c.line)
		if !ok || mp != c.mp || typ != c.typ || src != c.src {
			t.Errorf("%q: got %q %q %q %v", c.line, mp, typ, src, ok)
		}
	}
	for _, bad := range []string{"", "1 2 3", "1 2 3 4 5 6 7 -"} {
		if _, _, _, ok := parseMountinfo(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}
