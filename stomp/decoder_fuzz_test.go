package stomp

import (
	"reflect"
	"testing"
)

// FuzzDecode feeds the frame decoder arbitrary input, whole and split in
// two, in each version. The kept corpus is testdata/fuzz/FuzzDecode; run
//
//	go test ./stomp/ -run '^$' -fuzz FuzzDecode -fuzztime 60s
//
// and copy new interesting inputs from the fuzz cache there.
//
// It checks that the decoder never panics, that how the input is split
// changes nothing, that decoded frames respect the limits, and that
// every decoded frame encodes to bytes that decode to the same frame.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"CONNECT\naccept-version:1.2\nhost:h\nheart-beat:10000,10000\nlogin:a\npasscode:b\n\n\x00",
		"\n\r\nSEND\r\ndestination:/app/x\r\ncontent-length:3\r\n\r\na\x00b\x00\n",
		"SUBSCRIBE\nid:0\ndestination:/topic/a\\cb\nack:auto\nreceipt:r\\n1\n\n\x00",
		"SEND\nk:\\t\n\n\x00",
		"SEND\ncontent-length:99\n\nshort\x00",
		"DISCONNECT\nreceipt:77\n\n\x00UNSUBSCRIBE\nid:0\n\n\x00",
	} {
		f.Add([]byte(s), uint16(len(s)/2), uint8(2))
	}
	lim := limits{maxFrameSize: 512, maxHeaders: 6, maxHeaderLength: 96}
	big := limits{maxFrameSize: 1 << 20, maxHeaders: 1 << 10, maxHeaderLength: 1 << 20}
	f.Fuzz(func(t *testing.T, data []byte, split uint16, ver uint8) {
		v := []version{v10, v11, v12}[int(ver)%3]
		whole, errWhole := decodeAll(lim, v, data)

		// Split in two at any point: the same frames, the same verdict.
		at := 0
		if len(data) > 0 {
			at = int(split) % (len(data) + 1)
		}
		d := newDecoder(lim)
		d.version = v
		var parts []*frame
		var errParts error
	feed:
		for _, chunk := range [][]byte{data[:at], data[at:]} {
			d.feed(chunk)
			for {
				fr, err := d.next()
				if err != nil {
					errParts = err
					break feed
				}
				if fr == nil {
					break
				}
				parts = append(parts, fr)
			}
		}
		if (errWhole == nil) != (errParts == nil) || !reflect.DeepEqual(whole, parts) {
			t.Fatalf("split at %d changes the result:\nwhole %s %v\nsplit %s %v", at, dump(whole), errWhole, dump(parts), errParts)
		}

		for _, fr := range whole {
			if len(fr.headers) > lim.maxHeaders {
				t.Fatalf("%d headers decoded, limit %d", len(fr.headers), lim.maxHeaders)
			}
			if len(fr.body) >= lim.maxFrameSize {
				t.Fatalf("body of %d bytes decoded, frame limit %d", len(fr.body), lim.maxFrameSize)
			}
			// Escaping may lengthen a re-encoded frame (a raw colon in a
			// value becomes \c), so read it back without limits.
			enc := appendFrame(nil, fr, v)
			again, err := decodeAll(big, v, enc)
			if err != nil || len(again) != 1 || !reflect.DeepEqual(again[0], fr) {
				t.Fatalf("frame %s encodes to %q, which decodes to %s, %v", dump([]*frame{fr}), enc, dump(again), err)
			}
		}
	})
}
