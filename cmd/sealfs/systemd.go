package main

import (
	"net"
	"os"
)

// sdNotify sends state to systemd when it runs sealfs as a Type=notify
// service (sd_notify(3)): READY=1 once a foreground mount is usable, so
// that units ordered after it (a backup) start only then; STOPPING=1 when it
// unmounts. Without $NOTIFY_SOCKET it does nothing; failures are not
// errors (systemd then just waits for its timeout).
func sdNotify(state string) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return
	}
	if name[0] == '@' {
		name = "\x00" + name[1:] // abstract namespace
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte(state))
}
