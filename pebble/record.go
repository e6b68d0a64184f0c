package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/tccd/tccd"
)

// A stored value is a fixed header followed by the record's body:
//
//	[0:8]  version, big endian
//	[8]    state code (see stateCode)
//	[9:17] CreatedAt, Unix nanoseconds, big endian
//	[17]   body format (formatV3; 1 and 2 are still read), with flagPending
//	       set when the outcome's notification is pending
//	[18:]  body: the fields in a fixed order, strings as uvarint length +
//	       bytes, integers and times (Unix nanoseconds, 0 = none) as varints
//
// Format 2 is format 1 followed by three strings: CreatedBy, ResolvedBy
// and ResolutionNote. A format-1 record reads with those empty. Format 3
// is format 2 followed by tagged fields — a count, then for each a tag
// (uvarint) and its value (a length-prefixed string) — and, for each
// participant, its own tagged fields the same way: a field added later
// gets a new tag instead of a new format, and a record without it reads
// it empty. Unknown tags are an error (a record from a newer tccd).
//
// The header lets Update check the version and find the old index keys
// without decoding the body. The body is a hand-written binary form: the
// record is written on every state change, and reflection-based JSON
// showed in profiles of the confirm path.
const (
	headerLen = 18
	formatV1  = 1
	formatV2  = 2
	formatV3  = 3
	// flagPending, or-ed into the format byte, marks a record whose
	// notification is pending: Update finds the old index entry without
	// decoding the body.
	flagPending = 0x80
)

// Tags of the tagged fields of format 3.
const (
	tagNotify       = 1 // Transaction.Notify
	tagNotification = 2 // Transaction.Notification, encoded by appendNotification
	tagBarrier      = 3 // Transaction.Barrier (present: true)
	tagRound        = 4 // Transaction.Round, encoded by appendRound
	tagEpoch        = 5 // Transaction.Epoch (uvarint)
	tagTraceParent  = 6 // Transaction.TraceParent
)

// Tags of a participant's tagged fields (format 3).
const (
	ptagStyle      = 1 // Participant.Style
	ptagConfirmURI = 2
	ptagCancelURI  = 3
	ptagCompensate = 4
	ptagMessage    = 5 // Participant.Message, encoded by appendMessage
	ptagFirstTry   = 6 // Participant.FirstAttemptAt (varint Unix nanoseconds)
)

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// stateCodes gives each state the one-byte code it has in keys and
// headers. The codes are stored: they never change, and a new state gets
// a new code (never one derived from a position in tccd.States).
var stateCodes = map[tccd.State]byte{
	tccd.StateActive:     'a',
	tccd.StateConfirming: 'b',
	tccd.StateConfirmed:  'c',
	tccd.StateCancelling: 'd',
	tccd.StateCancelled:  'e',
	tccd.StateHeuristic:  'f',
	// Added later: new codes, never a position.
	tccd.StateCompensating: 'g',
	tccd.StateCompensated:  'h',
}

// codeStates is stateCodes inverted.
var codeStates = func() map[byte]tccd.State {
	m := make(map[byte]tccd.State, len(stateCodes))
	for s, c := range stateCodes {
		m[c] = s
	}
	return m
}()

// stateCode returns the stored code of a state, 0 for an unknown one.
func stateCode(s tccd.State) byte { return stateCodes[s] }

// stateOfCode returns the state of a stored code.
func stateOfCode(c byte) (tccd.State, bool) {
	s, ok := codeStates[c]
	return s, ok
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func encode(tx *tccd.Transaction, version uint64) ([]byte, error) {
	size := headerLen + 64 + len(tx.ID) + len(tx.Name) + len(tx.Owner) +
		len(tx.CreatedBy) + len(tx.ResolvedBy) + len(tx.ResolutionNote)
	for _, p := range tx.Participants {
		size += 48 + len(p.URI) + len(p.LastError)
	}
	b := make([]byte, 0, size)
	b = binary.BigEndian.AppendUint64(b, version)
	b = append(b, stateCode(tx.State))
	b = binary.BigEndian.AppendUint64(b, uint64(nanos(tx.CreatedAt)))
	b = append(b, formatV3)
	b = appendString(b, tx.ID)
	b = appendString(b, string(tx.Protocol))
	b = appendString(b, tx.Name)
	b = binary.AppendUvarint(b, uint64(len(tx.Labels)))
	for k, v := range tx.Labels {
		b = appendString(b, k)
		b = appendString(b, v)
	}
	b = appendString(b, string(tx.State))
	b = appendString(b, string(tx.Reason))
	for _, n := range []int64{int64(tx.Timeout), nanos(tx.Deadline), nanos(tx.CreatedAt), nanos(tx.UpdatedAt),
		nanos(tx.DecidedAt), nanos(tx.FinishedAt)} {
		b = binary.AppendVarint(b, n)
	}
	b = appendString(b, tx.Owner)
	b = binary.AppendVarint(b, nanos(tx.LeaseUntil))
	b = binary.AppendUvarint(b, uint64(len(tx.Participants)))
	for _, p := range tx.Participants {
		b = appendString(b, p.URI)
		b = binary.AppendVarint(b, nanos(p.Expires))
		b = appendString(b, string(p.State))
		b = binary.AppendUvarint(b, uint64(p.Attempts))
		b = binary.AppendUvarint(b, uint64(p.LastStatus))
		b = appendString(b, p.LastError)
		b = binary.AppendVarint(b, nanos(p.LastAttemptAt))
		b = binary.AppendVarint(b, int64(p.LastDuration))
	}
	b = appendString(b, tx.CreatedBy)
	b = appendString(b, tx.ResolvedBy)
	b = appendString(b, tx.ResolutionNote)
	// Tagged fields: only those set.
	var tags tagged
	if tx.Notify != "" {
		tags.add(tagNotify, tx.Notify)
	}
	if tx.Notification != (tccd.Notification{}) {
		tags.add(tagNotification, string(appendNotification(nil, tx.Notification)))
	}
	if tx.Barrier {
		tags.add(tagBarrier, "")
	}
	if tx.Round != nil {
		tags.add(tagRound, string(appendRound(nil, tx.Round)))
	}
	if tx.Epoch != 0 {
		tags.add(tagEpoch, string(binary.AppendUvarint(nil, tx.Epoch)))
	}
	if tx.TraceParent != "" {
		tags.add(tagTraceParent, tx.TraceParent)
	}
	b = tags.append(b)
	// Participants' tagged fields: a count (0 when none has any), then,
	// for each participant in order, its tagged fields.
	var ptags []tagged
	any := false
	for _, p := range tx.Participants {
		var t tagged
		if p.Style != "" {
			t.add(ptagStyle, string(p.Style))
		}
		if p.ConfirmURI != "" {
			t.add(ptagConfirmURI, p.ConfirmURI)
		}
		if p.CancelURI != "" {
			t.add(ptagCancelURI, p.CancelURI)
		}
		if p.CompensateURI != "" {
			t.add(ptagCompensate, p.CompensateURI)
		}
		if p.Message != nil {
			t.add(ptagMessage, string(appendMessage(nil, p.Message)))
		}
		if !p.FirstAttemptAt.IsZero() {
			t.add(ptagFirstTry, string(binary.AppendVarint(nil, nanos(p.FirstAttemptAt))))
		}
		any = any || len(t) > 0
		ptags = append(ptags, t)
	}
	if !any {
		ptags = nil
	}
	b = binary.AppendUvarint(b, uint64(len(ptags)))
	for _, t := range ptags {
		b = t.append(b)
	}
	if tx.Notification.State == tccd.NotificationPending {
		b[17] |= flagPending
	}
	return b, nil
}

// tagged holds tagged fields to encode.
type tagged []struct {
	tag uint64
	val string
}

func (t *tagged) add(tag uint64, val string) {
	*t = append(*t, struct {
		tag uint64
		val string
	}{tag, val})
}

func (t tagged) append(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(t)))
	for _, f := range t {
		b = binary.AppendUvarint(b, f.tag)
		b = appendString(b, f.val)
	}
	return b
}

// appendRound encodes a barrier round: N, committed, then the keys
// sorted by participant URI.
func appendRound(b []byte, r *tccd.Round) []byte {
	b = binary.AppendUvarint(b, uint64(r.N))
	b = append(b, byte(btoi(r.Committed)))
	uris := make([]string, 0, len(r.Keys))
	for u := range r.Keys {
		uris = append(uris, u)
	}
	sort.Strings(uris)
	b = binary.AppendUvarint(b, uint64(len(uris)))
	for _, u := range uris {
		b = appendString(b, u)
		b = appendString(b, r.Keys[u])
	}
	return b
}

func decodeRound(v string) (*tccd.Round, error) {
	r := &reader{b: []byte(v)}
	round := &tccd.Round{N: int(r.uvarint())}
	if r.err == nil && len(r.b) > 0 {
		round.Committed = r.b[0] == 1
		r.b = r.b[1:]
	} else {
		r.err = errCorrupt
	}
	n := r.count(2)
	round.Keys = make(map[string]string, n)
	for i := 0; i < n; i++ {
		u := r.string()
		round.Keys[u] = r.string()
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errCorrupt
	}
	return round, r.err
}

// appendMessage encodes a message: subject, data, then the headers
// sorted by name.
func appendMessage(b []byte, m *tccd.Message) []byte {
	b = appendString(b, m.Subject)
	b = appendString(b, string(m.Data))
	names := make([]string, 0, len(m.Headers))
	for k := range m.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, k := range names {
		b = appendString(b, k)
		b = appendString(b, m.Headers[k])
	}
	return b
}

func decodeMessage(v string) (*tccd.Message, error) {
	r := &reader{b: []byte(v)}
	m := &tccd.Message{Subject: r.string()}
	if data := r.string(); data != "" {
		m.Data = []byte(data)
	}
	if n := r.count(2); n > 0 {
		m.Headers = make(map[string]string, n)
		for i := 0; i < n; i++ {
			k := r.string()
			m.Headers[k] = r.string()
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errCorrupt
	}
	return m, r.err
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func appendNotification(b []byte, n tccd.Notification) []byte {
	b = appendString(b, string(n.State))
	b = appendString(b, n.DeliveryID)
	b = binary.AppendVarint(b, nanos(n.Since))
	b = binary.AppendUvarint(b, uint64(n.Attempts))
	b = binary.AppendUvarint(b, uint64(n.LastStatus))
	b = appendString(b, n.LastError)
	return binary.AppendVarint(b, nanos(n.LastAttemptAt))
}

func decodeNotification(v string) (tccd.Notification, error) {
	r := &reader{b: []byte(v)}
	n := tccd.Notification{
		State:      tccd.NotificationState(r.string()),
		DeliveryID: r.string(),
		Since:      fromNanos(r.varint()),
		Attempts:   int(r.uvarint()),
		LastStatus: int(r.uvarint()),
		LastError:  r.string(),
	}
	n.LastAttemptAt = fromNanos(r.varint())
	if r.err == nil && len(r.b) != 0 {
		r.err = errCorrupt
	}
	return n, r.err
}

type header struct {
	version uint64
	state   byte
	created int64
	pending bool // the notification is pending (n/ index entry)
}

func decodeHeader(v []byte) (header, error) {
	if len(v) < headerLen {
		return header{}, fmt.Errorf("corrupt record: %d bytes", len(v))
	}
	return header{
		version: binary.BigEndian.Uint64(v[0:8]),
		state:   v[8],
		created: int64(binary.BigEndian.Uint64(v[9:17])),
		pending: v[17]&flagPending != 0,
	}, nil
}

var errCorrupt = errors.New("corrupt record")

// reader decodes a body; the first error sticks and later reads return zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = errCorrupt
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// count reads a length that must fit in what is left (each item takes at
// least min bytes), so a corrupt length cannot make a huge allocation.
func (r *reader) count(min int) int {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)/min) {
		r.err = errCorrupt
		return 0
	}
	return int(n)
}

func decode(v []byte) (*tccd.Transaction, error) {
	h, err := decodeHeader(v)
	if err != nil {
		return nil, err
	}
	format := v[17] &^ flagPending
	if format != formatV1 && format != formatV2 && format != formatV3 {
		return nil, fmt.Errorf("corrupt record: unknown format %d", format)
	}
	r := &reader{b: v[headerLen:]}
	tx := &tccd.Transaction{Version: h.version}
	tx.ID = r.string()
	tx.Protocol = tccd.Protocol(r.string())
	tx.Name = r.string()
	if n := r.count(2); n > 0 {
		tx.Labels = make(map[string]string, n)
		for i := 0; i < n; i++ {
			k := r.string()
			tx.Labels[k] = r.string()
		}
	}
	tx.State = tccd.State(r.string())
	tx.Reason = tccd.Reason(r.string())
	tx.Timeout = time.Duration(r.varint())
	tx.Deadline = fromNanos(r.varint())
	tx.CreatedAt = fromNanos(r.varint())
	tx.UpdatedAt = fromNanos(r.varint())
	tx.DecidedAt = fromNanos(r.varint())
	tx.FinishedAt = fromNanos(r.varint())
	tx.Owner = r.string()
	tx.LeaseUntil = fromNanos(r.varint())
	if n := r.count(8); n > 0 {
		tx.Participants = make([]tccd.Participant, n)
		for i := range tx.Participants {
			p := &tx.Participants[i]
			p.URI = r.string()
			p.Expires = fromNanos(r.varint())
			p.State = tccd.ParticipantState(r.string())
			p.Attempts = int(r.uvarint())
			p.LastStatus = int(r.uvarint())
			p.LastError = r.string()
			p.LastAttemptAt = fromNanos(r.varint())
			p.LastDuration = time.Duration(r.varint())
		}
	}
	if format >= formatV2 {
		tx.CreatedBy = r.string()
		tx.ResolvedBy = r.string()
		tx.ResolutionNote = r.string()
	}
	if format >= formatV3 {
		for n := r.count(2); n > 0 && r.err == nil; n-- {
			tag, val := r.uvarint(), r.string()
			switch tag {
			case tagNotify:
				tx.Notify = val
			case tagNotification:
				var err error
				if tx.Notification, err = decodeNotification(val); err != nil {
					r.err = err
				}
			case tagBarrier:
				tx.Barrier = true
			case tagEpoch:
				e, n := binary.Uvarint([]byte(val))
				if n <= 0 || n != len(val) {
					r.err = errCorrupt
				}
				tx.Epoch = e
			case tagTraceParent:
				tx.TraceParent = val
			case tagRound:
				var err error
				if tx.Round, err = decodeRound(val); err != nil {
					r.err = err
				}
			default:
				if r.err == nil {
					r.err = fmt.Errorf("%w: unknown field tag %d (written by a newer tccd?)", errCorrupt, tag)
				}
			}
		}
		n := r.count(1)
		if n != 0 && n != len(tx.Participants) && r.err == nil {
			r.err = fmt.Errorf("%w: fields of %d participants, %d in the record", errCorrupt, n, len(tx.Participants))
		}
		for i := 0; i < n && r.err == nil; i++ {
			p := &tx.Participants[i]
			for m := r.count(2); m > 0 && r.err == nil; m-- {
				tag, val := r.uvarint(), r.string()
				switch tag {
				case ptagStyle:
					p.Style = tccd.Style(val)
				case ptagConfirmURI:
					p.ConfirmURI = val
				case ptagCancelURI:
					p.CancelURI = val
				case ptagCompensate:
					p.CompensateURI = val
				case ptagMessage:
					var err error
					if p.Message, err = decodeMessage(val); err != nil {
						r.err = err
					}
				case ptagFirstTry:
					t, n := binary.Varint([]byte(val))
					if n <= 0 || n != len(val) {
						r.err = errCorrupt
					}
					p.FirstAttemptAt = fromNanos(t)
				default:
					if r.err == nil {
						r.err = fmt.Errorf("%w: unknown participant field tag %d (written by a newer tccd?)", errCorrupt, tag)
					}
				}
			}
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errCorrupt
	}
	if r.err != nil {
		return nil, fmt.Errorf("decode %x…: %w", v[:min(len(v), 32)], r.err)
	}
	return tx, nil
}
