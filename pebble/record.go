package pebble

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tccd/tccd"
)

// A stored value is a fixed header followed by the JSON of a record:
//
//	[0:8]  version, big endian
//	[8]    state code (see stateCode)
//	[9:17] CreatedAt, Unix nanoseconds, big endian
//	[17:]  record as JSON
//
// The header lets Update check the version and find the old index keys
// without decoding the body.
const headerLen = 17

// record is the stored form of a transaction; it is separate from the
// domain type and from the HTTP wire form on purpose.
type record struct {
	ID         string            `json:"id"`
	Protocol   string            `json:"p"`
	Name       string            `json:"n,omitempty"`
	Labels     map[string]string `json:"l,omitempty"`
	State      string            `json:"s"`
	Reason     string            `json:"r,omitempty"`
	Timeout    int64             `json:"to,omitempty"`
	Deadline   int64             `json:"dl,omitempty"`
	Created    int64             `json:"ct"`
	Updated    int64             `json:"ut,omitempty"`
	Decided    int64             `json:"dt,omitempty"`
	Finished   int64             `json:"ft,omitempty"`
	Owner      string            `json:"o,omitempty"`
	LeaseUntil int64             `json:"lu,omitempty"`
	Parts      []partRecord      `json:"ps,omitempty"`
}

type partRecord struct {
	URI          string `json:"u"`
	Expires      int64  `json:"e"`
	State        string `json:"s"`
	Attempts     int    `json:"a,omitempty"`
	LastStatus   int    `json:"ls,omitempty"`
	LastError    string `json:"le,omitempty"`
	LastAttempt  int64  `json:"la,omitempty"`
	LastDuration int64  `json:"ld,omitempty"`
}

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

// stateCode gives each state a one-byte code for keys and headers.
func stateCode(s tccd.State) byte {
	for i, st := range tccd.States {
		if st == s {
			return byte('a' + i)
		}
	}
	return 0
}

func encode(tx *tccd.Transaction, version uint64) ([]byte, error) {
	r := record{
		ID: tx.ID, Protocol: string(tx.Protocol), Name: tx.Name, Labels: tx.Labels,
		State: string(tx.State), Reason: string(tx.Reason), Timeout: int64(tx.Timeout),
		Deadline: nanos(tx.Deadline), Created: nanos(tx.CreatedAt), Updated: nanos(tx.UpdatedAt),
		Decided: nanos(tx.DecidedAt), Finished: nanos(tx.FinishedAt),
		Owner: tx.Owner, LeaseUntil: nanos(tx.LeaseUntil),
	}
	if len(tx.Participants) > 0 {
		r.Parts = make([]partRecord, len(tx.Participants))
		for i, p := range tx.Participants {
			r.Parts[i] = partRecord{
				URI: p.URI, Expires: nanos(p.Expires), State: string(p.State), Attempts: p.Attempts,
				LastStatus: p.LastStatus, LastError: p.LastError,
				LastAttempt: nanos(p.LastAttemptAt), LastDuration: int64(p.LastDuration),
			}
		}
	}
	body, err := json.Marshal(&r)
	if err != nil {
		return nil, fmt.Errorf("encode transaction %s: %w", tx.ID, err)
	}
	buf := make([]byte, headerLen, headerLen+len(body))
	binary.BigEndian.PutUint64(buf[0:8], version)
	buf[8] = stateCode(tx.State)
	binary.BigEndian.PutUint64(buf[9:17], uint64(nanos(tx.CreatedAt)))
	return append(buf, body...), nil
}

type header struct {
	version uint64
	state   byte
	created int64
}

func decodeHeader(v []byte) (header, error) {
	if len(v) < headerLen {
		return header{}, fmt.Errorf("corrupt record: %d bytes", len(v))
	}
	return header{
		version: binary.BigEndian.Uint64(v[0:8]),
		state:   v[8],
		created: int64(binary.BigEndian.Uint64(v[9:17])),
	}, nil
}

func decode(v []byte) (*tccd.Transaction, error) {
	h, err := decodeHeader(v)
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(v[headerLen:], &r); err != nil {
		return nil, fmt.Errorf("corrupt record: %w", err)
	}
	tx := &tccd.Transaction{
		ID: r.ID, Protocol: tccd.Protocol(r.Protocol), Name: r.Name, Labels: r.Labels,
		State: tccd.State(r.State), Reason: tccd.Reason(r.Reason), Timeout: time.Duration(r.Timeout),
		Deadline: fromNanos(r.Deadline), CreatedAt: fromNanos(r.Created), UpdatedAt: fromNanos(r.Updated),
		DecidedAt: fromNanos(r.Decided), FinishedAt: fromNanos(r.Finished),
		Owner: r.Owner, LeaseUntil: fromNanos(r.LeaseUntil), Version: h.version,
	}
	if len(r.Parts) > 0 {
		tx.Participants = make([]tccd.Participant, len(r.Parts))
		for i, p := range r.Parts {
			tx.Participants[i] = tccd.Participant{
				URI: p.URI, Expires: fromNanos(p.Expires), State: tccd.ParticipantState(p.State),
				Attempts: p.Attempts, LastStatus: p.LastStatus, LastError: p.LastError,
				LastAttemptAt: fromNanos(p.LastAttempt), LastDuration: time.Duration(p.LastDuration),
			}
		}
	}
	return tx, nil
}
