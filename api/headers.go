package api

// Media types.
const (
	MediaJSON    = "application/json"
	MediaTCCJSON = "application/tcc+json" // Atomikos coordinator requests
	MediaTCC     = "application/tcc"      // Accept/Content-Type of confirm and cancel calls
	MediaProblem = "application/problem+json"
)

// Context propagation. A request made on behalf of a transaction carries
//
//	Link: <http://coordinator/api/v1/transactions/{id}>; rel="tcc-transaction"
//	Tcc-Transaction-Id: {id}
//
// and a participant's answer carries one Link per reservation, its own and
// those of the participants it called in turn:
//
//	Link: <http://svc/booking/42>; rel="tcc"; expires="2026-11-21T10:15:54Z"
//
// Also understood on input: the MicroTx relations below (with a timeLimit
// parameter for the expiry), a JSON body {"participantLink":{uri,expires}},
// and 201 Created with Location and a Tcc-Expires header.
const (
	HeaderTransactionID = "Tcc-Transaction-Id"
	HeaderExpires       = "Tcc-Expires"
	// HeaderErrorCode carries the error code (Code…) of an error answer of
	// the Atomikos endpoints, whose body is plain text: their 409 may be a
	// heuristic outcome or a conflict (a cancel of a confirmed set).
	HeaderErrorCode = "Tcc-Error-Code"
	// HeaderBarrier carries, on a confirm of a barrier-mode transaction,
	// the key of the round the participant reports on.
	HeaderBarrier  = "Tcc-Barrier"
	RelTransaction = "tcc-transaction"
	RelParticipant = "tcc"
	// MicroTxRelTransaction and MicroTxRelParticipant are Oracle MicroTx's
	// relations, accepted on input.
	MicroTxRelTransaction = "https://otmm.oracle.com/tcc-transaction"
	MicroTxRelParticipant = "https://otmm.oracle.com/tcc-participant"
	// ParamExpires is the Link parameter of the expiry; MicroTx uses timeLimit.
	ParamExpires = "expires"
	// ParamStyle is the Link parameter of a participant's style:
	// style="compensate" for a participant whose try did the work (see
	// Link.Style); absent for the default, "tcc".
	ParamStyle            = "style"
	MicroTxParamTimeLimit = "timeLimit"
)
