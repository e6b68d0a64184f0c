package stomp

import (
	"strconv"
	"strings"
)

// Commands. Client frames first, then server frames.
const (
	cmdConnect     = "CONNECT"
	cmdStomp       = "STOMP"
	cmdSend        = "SEND"
	cmdSubscribe   = "SUBSCRIBE"
	cmdUnsubscribe = "UNSUBSCRIBE"
	cmdAck         = "ACK"
	cmdNack        = "NACK"
	cmdBegin       = "BEGIN"
	cmdCommit      = "COMMIT"
	cmdAbort       = "ABORT"
	cmdDisconnect  = "DISCONNECT"

	cmdConnected = "CONNECTED"
	cmdMessage   = "MESSAGE"
	cmdReceipt   = "RECEIPT"
	cmdError     = "ERROR"
)

// Header names the server reads or writes.
const (
	hdrAcceptVersion = "accept-version"
	hdrAck           = "ack"
	hdrContentLength = "content-length"
	hdrContentType   = "content-type"
	hdrDestination   = "destination"
	hdrHeartBeat     = "heart-beat"
	hdrID            = "id"
	hdrLogin         = "login"
	hdrMessage       = "message"
	hdrMessageID     = "message-id"
	hdrPasscode      = "passcode"
	hdrReceipt       = "receipt"
	hdrReceiptID     = "receipt-id"
	hdrServer        = "server"
	hdrSession       = "session"
	hdrSubscription  = "subscription"
	hdrTransaction   = "transaction"
	hdrVersion       = "version"
)

// version is a STOMP protocol version: 10, 11 or 12.
type version int

const (
	v10 version = 10
	v11 version = 11
	v12 version = 12
)

func (v version) String() string {
	switch v {
	case v10:
		return "1.0"
	case v11:
		return "1.1"
	case v12:
		return "1.2"
	}
	return "unknown"
}

// header is one header line of a frame. A frame keeps them in order and
// may repeat a name: STOMP says the first occurrence wins, which is what
// frame.get returns.
type header struct {
	key, value string
}

// frame is one STOMP frame.
type frame struct {
	command string
	headers []header
	body    []byte
}

// get returns the first value of the header named key.
func (f *frame) get(key string) (string, bool) {
	for _, h := range f.headers {
		if h.key == key {
			return h.value, true
		}
	}
	return "", false
}

// headerMap returns the frame's headers as a map, the first occurrence of
// each name winning.
func (f *frame) headerMap() map[string]string {
	m := make(map[string]string, len(f.headers))
	for _, h := range f.headers {
		if _, ok := m[h.key]; !ok {
			m[h.key] = h.value
		}
	}
	return m
}

// escapes reports whether header names and values of a command are
// escaped in version v. STOMP 1.0 has no escaping; 1.1 and 1.2 escape
// every frame except CONNECT and CONNECTED, which stay readable by 1.0
// peers. (STOMP frames are escaped: the command only exists from 1.1 on.)
func escapes(v version, command string) bool {
	return v >= v11 && command != cmdConnect && command != cmdConnected
}

// appendFrame appends the wire form of f, as spoken in version v, to dst:
// the command, the headers in order, a blank line, the body and the
// terminating NUL. It writes exactly the headers f has; callers that send
// a body add content-length themselves.
//
// Where the version cannot represent a header (a name or value holding CR
// or LF, or a name holding a colon, in an unescaped frame), the header is
// left out rather than corrupting the frame.
func appendFrame(dst []byte, f *frame, v version) []byte {
	esc := escapes(v, f.command)
	dst = append(dst, f.command...)
	dst = append(dst, '\n')
	for _, h := range f.headers {
		if esc {
			dst = appendEscaped(dst, h.key)
			dst = append(dst, ':')
			dst = appendEscaped(dst, h.value)
		} else {
			if strings.ContainsAny(h.key, "\r\n:") || strings.ContainsAny(h.value, "\r\n") {
				continue
			}
			dst = append(dst, h.key...)
			dst = append(dst, ':')
			dst = append(dst, h.value...)
		}
		dst = append(dst, '\n')
	}
	dst = append(dst, '\n')
	dst = append(dst, f.body...)
	return append(dst, 0)
}

// appendEscaped appends s with STOMP 1.1/1.2 header escaping.
func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\n':
			dst = append(dst, '\\', 'n')
		case ':':
			dst = append(dst, '\\', 'c')
		case '\\':
			dst = append(dst, '\\', '\\')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// unescape reverses appendEscaped. Any other backslash sequence, and a
// trailing backslash, is an error: STOMP 1.2 makes them fatal.
func unescape(b []byte) (string, bool) {
	if !containsByte(b, '\\') {
		return string(b), true
	}
	var sb strings.Builder
	sb.Grow(len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' {
			sb.WriteByte(c)
			continue
		}
		i++
		if i == len(b) {
			return "", false
		}
		switch b[i] {
		case 'r':
			sb.WriteByte('\r')
		case 'n':
			sb.WriteByte('\n')
		case 'c':
			sb.WriteByte(':')
		case '\\':
			sb.WriteByte('\\')
		default:
			return "", false
		}
	}
	return sb.String(), true
}

func containsByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

// withBody returns headers plus a content-length for body. Every frame
// the server sends with a body says its length, so that a body may hold
// NUL octets and a peer need not scan for the end.
func withBody(headers []header, body []byte) []header {
	return append(headers, header{hdrContentLength, strconv.Itoa(len(body))})
}
