package stomp

import (
	"bytes"
	"errors"
	"fmt"
)

// limits bounds what the decoder accepts from a peer.
type limits struct {
	maxFrameSize    int // bytes from the command through the NUL
	maxHeaders      int // header lines in one frame
	maxHeaderLength int // bytes of one header line (and of the command line), as sent
}

// maxCommandLength bounds a command line: the longest command is 11 bytes.
const maxCommandLength = 16

// A decodeError is a frame the decoder refuses. Its text is what the
// server puts in the ERROR frame's message header.
type decodeError struct {
	msg string
	// receipt is the refused frame's receipt header, when the decoder
	// had read it before the fault (a body too large, say), so that the
	// ERROR can name the frame with receipt-id.
	receipt string
}

func (e *decodeError) Error() string { return e.msg }

func malformed(format string, args ...any) error {
	return &decodeError{msg: "malformed frame: " + fmt.Sprintf(format, args...)}
}

func tooLarge(format string, args ...any) error {
	return &decodeError{msg: fmt.Sprintf(format, args...)}
}

// errMore is returned internally when a line or body is not complete yet.
var errMore = errors.New("need more input")

// decoder turns a byte stream into frames. Input arrives in chunks of any
// size (a WebSocket message may hold several frames, or part of one);
// feed appends a chunk, next returns the frames it completes.
//
// It works incrementally: each byte is examined a bounded number of times
// however the input is split, and it never buffers more than one frame's
// worth beyond the limit, so a peer cannot make it quadratic or large by
// sending a frame a byte at a time. After an error it must not be used
// again: the server closes the connection.
type decoder struct {
	lim limits
	// version decides header escaping; the server sets it once CONNECT
	// has been answered. Until then frames are read by the 1.2 rules
	// (CONNECT itself is never escaped).
	version version

	buf []byte // buf[off:] is unconsumed input
	off int

	// Progress through the current frame. Offsets are relative to off,
	// the frame's first byte once started is true.
	started   bool   // past the heart-beat EOLs before a frame
	scan      int    // input before scan holds no line end / NUL still wanted
	lineStart int    // start of the line being read
	inBody    bool   // headers done
	bodyStart int    // offset of the body
	clen      int    // content-length, or -1
	escape    bool   // this frame's headers are escaped
	f         *frame // the frame being read
}

func newDecoder(lim limits) *decoder {
	return &decoder{lim: lim, version: v12}
}

// feed appends input.
func (d *decoder) feed(p []byte) {
	if d.off > 0 {
		// Drop consumed input first; append's copy allows the overlap.
		d.buf = append(d.buf[:0], d.buf[d.off:]...)
		d.off = 0
	}
	d.buf = append(d.buf, p...)
}

// next returns the next complete frame, or nil and no error when more
// input is needed. The frame does not alias the decoder's buffer.
func (d *decoder) next() (*frame, error) {
	f, err := d.advance()
	if de, ok := err.(*decodeError); ok && d.f != nil {
		de.receipt, _ = d.f.get(hdrReceipt)
	}
	return f, err
}

func (d *decoder) advance() (*frame, error) {
	if !d.started {
		if err := d.skipHeartBeats(); err != nil {
			return nil, err
		}
		if !d.started {
			return nil, nil
		}
	}
	for !d.inBody {
		line, err := d.line()
		if err == errMore {
			return nil, d.checkPartial()
		}
		if err != nil {
			return nil, err
		}
		if err := d.headerLine(line); err != nil {
			return nil, err
		}
	}
	f, err := d.body()
	if err == errMore {
		return nil, d.checkPartial()
	}
	return f, err
}

// skipHeartBeats consumes the EOLs peers send between frames as
// heart-beats, and starts a frame at the first other byte.
func (d *decoder) skipHeartBeats() error {
	for d.off < len(d.buf) {
		switch d.buf[d.off] {
		case '\n':
			d.off++
		case '\r':
			if d.off+1 == len(d.buf) {
				return nil // the LF is still to come
			}
			if d.buf[d.off+1] != '\n' {
				return malformed("CR not followed by LF")
			}
			d.off += 2
		default:
			d.started = true
			d.scan, d.lineStart, d.inBody, d.bodyStart, d.clen = 0, 0, false, 0, -1
			d.f = &frame{}
			return nil
		}
	}
	return nil
}

// line returns the next complete line of the frame, without its EOL (LF
// or CR LF), or errMore.
func (d *decoder) line() ([]byte, error) {
	rest := d.buf[d.off+d.scan:]
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		d.scan = len(d.buf) - d.off
		return nil, errMore
	}
	end := d.scan + i // frame-relative offset of the LF
	line := d.buf[d.off+d.lineStart : d.off+end]
	d.scan = end + 1
	d.lineStart = end + 1
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if err := d.checkLine(len(line)); err != nil {
		return nil, err
	}
	if d.lineStart+1 > d.lim.maxFrameSize { // the NUL is still to come
		return nil, d.errFrameSize()
	}
	return line, nil
}

// checkLine bounds the line being read, complete or not.
func (d *decoder) checkLine(n int) error {
	if d.f.command == "" {
		if n > maxCommandLength {
			return malformed("command line longer than %d bytes", maxCommandLength)
		}
		return nil
	}
	if n > d.lim.maxHeaderLength {
		return tooLarge("header line longer than %d bytes", d.lim.maxHeaderLength)
	}
	return nil
}

// checkPartial bounds an incomplete frame, so that a peer cannot make the
// decoder buffer without limit by never finishing one.
func (d *decoder) checkPartial() error {
	n := len(d.buf) - d.off
	if !d.inBody {
		if err := d.checkLine(n - d.lineStart); err != nil {
			return err
		}
	}
	// The frame still needs its NUL: n bytes so far plus one.
	if n+1 > d.lim.maxFrameSize {
		return d.errFrameSize()
	}
	return nil
}

func (d *decoder) errFrameSize() error {
	return tooLarge("frame larger than %d bytes", d.lim.maxFrameSize)
}

// headerLine takes the command line, a header line, or the blank line
// that ends the headers.
func (d *decoder) headerLine(line []byte) error {
	f := d.f
	if f.command == "" {
		if len(line) == 0 {
			return malformed("empty command")
		}
		for _, c := range line {
			if c < 'A' || c > 'Z' {
				return malformed("command %q is not upper-case letters", line)
			}
		}
		f.command = string(line)
		d.escape = escapes(d.version, f.command)
		return nil
	}
	if len(line) == 0 {
		d.inBody = true
		d.bodyStart = d.lineStart
		if v, ok := f.get(hdrContentLength); ok {
			n, err := parseContentLength(v)
			if err != nil {
				return err
			}
			if d.bodyStart+n+1 > d.lim.maxFrameSize {
				return d.errFrameSize()
			}
			d.clen = n
		}
		return nil
	}
	if len(f.headers) == d.lim.maxHeaders {
		return tooLarge("more than %d headers", d.lim.maxHeaders)
	}
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return malformed("header line without a colon")
	}
	// A raw CR can only be a damaged EOL: the grammar excludes it from
	// names and values (escaped, it is \r).
	if containsByte(line, '\r') {
		return malformed("CR inside a header line")
	}
	key, value := line[:i], line[i+1:]
	if len(key) == 0 {
		return malformed("header with an empty name")
	}
	h := header{key: string(key), value: string(value)}
	if d.escape {
		var ok1, ok2 bool
		h.key, ok1 = unescape(key)
		h.value, ok2 = unescape(value)
		if !ok1 || !ok2 {
			return malformed("undefined escape sequence in header %q", key)
		}
	}
	f.headers = append(f.headers, h)
	return nil
}

// parseContentLength parses a content-length header: decimal digits only.
func parseContentLength(v string) (int, error) {
	if v == "" || len(v) > 10 {
		return 0, malformed("content-length %q", v)
	}
	n := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, malformed("content-length %q", v)
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}

// body completes the frame: content-length octets and a NUL, or
// everything up to the first NUL.
func (d *decoder) body() (*frame, error) {
	avail := len(d.buf) - d.off
	var end int // frame-relative offset of the terminating NUL
	if d.clen >= 0 {
		end = d.bodyStart + d.clen
		if avail <= end {
			return nil, errMore
		}
		if d.buf[d.off+end] != 0 {
			return nil, malformed("no NUL after the %d octets of content-length", d.clen)
		}
	} else {
		from := max(d.scan, d.bodyStart)
		i := bytes.IndexByte(d.buf[d.off+from:], 0)
		if i < 0 {
			d.scan = avail
			return nil, errMore
		}
		end = from + i
	}
	if end+1 > d.lim.maxFrameSize {
		return nil, d.errFrameSize()
	}
	f := d.f
	if end > d.bodyStart {
		f.body = bytes.Clone(d.buf[d.off+d.bodyStart : d.off+end])
	}
	d.off += end + 1
	d.started, d.f = false, nil
	return f, nil
}
