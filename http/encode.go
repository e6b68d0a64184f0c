package http

import (
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// writeTransaction answers with one transaction: what writeJSON(w, status,
// t) writes, read back the same (a test holds the two to that), rendered
// without reflection — encoding/json was the largest single cost of the
// registered flow's responses in profiles.
func writeTransaction(w http.ResponseWriter, status int, t Transaction) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(appendTransaction(make([]byte, 0, 512+256*len(t.Participants)), &t))
}

// appendTransaction appends t as encoding/json renders api.Transaction
// (the same members, omitted when encoding/json omits them), and a newline.
func appendTransaction(b []byte, t *Transaction) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, t.ID)
	b = append(b, `,"protocol":`...)
	b = appendString(b, t.Protocol)
	b = optString(b, "name", t.Name)
	if len(t.Labels) > 0 {
		b = append(b, `,"labels":{`...)
		keys := make([]string, 0, len(t.Labels))
		for k := range t.Labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, t.Labels[k])
		}
		b = append(b, '}')
	}
	b = append(b, `,"state":`...)
	b = appendString(b, t.State)
	b = optString(b, "reason", t.Reason)
	b = optString(b, "timeout", t.Timeout)
	b = optTimeField(b, "deadline", t.Deadline)
	b = append(b, `,"created_at":`...)
	b = appendTime(b, t.CreatedAt)
	b = append(b, `,"updated_at":`...)
	b = appendTime(b, t.UpdatedAt)
	b = optTimeField(b, "decided_at", t.DecidedAt)
	b = optTimeField(b, "finished_at", t.FinishedAt)
	b = optString(b, "created_by", t.CreatedBy)
	b = optString(b, "resolved_by", t.ResolvedBy)
	b = optString(b, "resolution_note", t.ResolutionNote)
	b = optString(b, "notify", t.Notify)
	if n := t.Notification; n != nil {
		b = append(b, `,"notification":{"state":`...)
		b = appendString(b, n.State)
		b = append(b, `,"attempts":`...)
		b = strconv.AppendInt(b, int64(n.Attempts), 10)
		b = optString(b, "delivery_id", n.DeliveryID)
		if n.LastStatus != 0 {
			b = append(b, `,"last_status":`...)
			b = strconv.AppendInt(b, int64(n.LastStatus), 10)
		}
		b = optString(b, "last_error", n.LastError)
		b = optTimeField(b, "last_attempt_at", n.LastAttemptAt)
		b = append(b, '}')
	}
	if t.Barrier {
		b = append(b, `,"barrier":true`...)
	}
	if r := t.Round; r != nil {
		b = append(b, `,"round":{"n":`...)
		b = strconv.AppendInt(b, int64(r.N), 10)
		b = append(b, `,"committed":`...)
		b = strconv.AppendBool(b, r.Committed)
		b = append(b, '}')
	}
	if t.Participants == nil {
		b = append(b, `,"participants":null`...)
	} else {
		b = append(b, `,"participants":[`...)
		for i := range t.Participants {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendParticipant(b, &t.Participants[i])
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...)
}

func appendParticipant(b []byte, p *Participant) []byte {
	b = append(b, `{"uri":`...)
	b = appendString(b, p.URI)
	b = append(b, `,"expires":`...)
	b = appendTime(b, p.Expires)
	b = optString(b, "style", p.Style)
	b = optString(b, "compensate", p.Compensate)
	b = append(b, `,"state":`...)
	b = appendString(b, p.State)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(p.Attempts), 10)
	if p.LastStatus != 0 {
		b = append(b, `,"last_status":`...)
		b = strconv.AppendInt(b, int64(p.LastStatus), 10)
	}
	b = optString(b, "last_error", p.LastError)
	b = optTimeField(b, "last_attempt_at", p.LastAttemptAt)
	if p.LastDurationMS != nil {
		b = append(b, `,"last_duration_ms":`...)
		b = appendFloat(b, *p.LastDurationMS)
	}
	b = optString(b, "subject", p.Subject)
	b = optString(b, "message_id", p.MessageID)
	return append(b, '}')
}

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD,
// as with encoding/json.
func appendString(b []byte, s string) []byte {
	out, _ := jsontext.AppendQuote(b, s)
	return out
}

func optString(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, s)
}

// appendTime appends t as time.Time's MarshalJSON does (RFC 3339 with
// nanoseconds; the times here are within its range).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func optTimeField(b []byte, name string, t *time.Time) []byte {
	if t == nil {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendTime(b, *t)
}

// appendFloat appends f as encoding/json does: plain notation between
// 1e-6 and 1e21, exponent notation outside.
func appendFloat(b []byte, f float64) []byte {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return append(b, "null"...) // not produced: durations are finite
	}
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		return strconv.AppendFloat(b, f, 'e', -1, 64)
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}
