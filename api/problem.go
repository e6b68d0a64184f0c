package api

import "net/http"

// ProblemTypePrefix starts the `type` of every problem document. The
// documents are identifiers, not links: nothing is fetched from them.
const ProblemTypePrefix = "urn:tccd:problem:"

// Problem is an RFC 9457 problem document with tccd's extension members.
type Problem struct {
	Type        string       `json:"type"`
	Title       string       `json:"title"`
	Status      int          `json:"status"`
	Detail      string       `json:"detail,omitempty"`
	Instance    string       `json:"instance,omitempty"`
	Code        string       `json:"code"`
	Field       string       `json:"field,omitempty"`
	State       string       `json:"state,omitempty"`
	Transaction *Transaction `json:"transaction,omitempty"`
	ErrorID     string       `json:"error_id,omitempty"`
}

// The stable error codes of the native API (the `code` of a Problem).
// They are the codes of the domain's tccd.Error; a test keeps both in sync.
const (
	CodeInvalid          = "invalid"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeTooLarge         = "too_large"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeTooManyRequests  = "too_many_requests"
	CodeNotConfigured    = "not_configured"
	CodeConflict         = "conflict"
	CodeTimedOut         = "timed_out"
	CodeHeuristic        = "heuristic"
	CodeCompensated      = "compensated"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal"
)

// codeStatus is the one table from error codes to HTTP status codes.
var codeStatus = map[string]int{
	CodeInvalid:          http.StatusBadRequest,
	CodeUnauthorized:     http.StatusUnauthorized,
	CodeForbidden:        http.StatusForbidden,
	CodeTooLarge:         http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia: http.StatusUnsupportedMediaType,
	CodeNotFound:         http.StatusNotFound,
	CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	CodeTooManyRequests:  http.StatusTooManyRequests,
	CodeNotConfigured:    http.StatusUnprocessableEntity,
	CodeConflict:         http.StatusConflict,
	CodeTimedOut:         http.StatusConflict,
	CodeHeuristic:        http.StatusConflict,
	CodeCompensated:      http.StatusConflict,
	CodeUnavailable:      http.StatusServiceUnavailable,
	CodeInternal:         http.StatusInternalServerError,
}

// StatusOf returns the HTTP status of an error code; 500 for unknown codes.
func StatusOf(code string) int {
	if s, ok := codeStatus[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Codes returns every error code.
func Codes() []string {
	out := make([]string, 0, len(codeStatus))
	for c := range codeStatus {
		out = append(out, c)
	}
	return out
}
