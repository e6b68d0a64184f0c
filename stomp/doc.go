// Package stomp is a STOMP 1.2 server over WebSocket, for applications
// that push messages to clients and take messages from them: tccd's
// all-confirmed barrier, where each participant subscribes to a topic of
// its own, reports on it with a SEND, and hears the round's outcome as a
// MESSAGE.
//
// # Transport
//
// A Server is an http.Handler that upgrades to a WebSocket
// (github.com/coder/websocket). It offers the subprotocols v12.stomp,
// v11.stomp and v10.stomp and picks the best the client offers. A client
// that offers none still connects (browser STOMP clients often send no
// Sec-WebSocket-Protocol): the STOMP version is settled by the CONNECT
// frame's accept-version, never by the subprotocol. Frames may arrive in
// text or binary messages, several to a message or one split across
// messages; the server sends one frame a message, text when it is UTF-8.
//
// # What is supported
//
// Versions 1.0, 1.1 and 1.2: the highest of the client's accept-version
// (none means 1.0). Frames follow the 1.2 grammar: LF or CR LF line ends,
// header escaping (\r \n \c \\) in 1.1 and 1.2 except in CONNECT and
// CONNECTED, the first of repeated headers wins, content-length honoured
// (so a body may hold NUL), heart-beat EOLs between frames.
//
//   - CONNECT or STOMP → CONNECTED with version, heart-beat, server and
//     session. Heart-beats are negotiated as STOMP says (Config.HeartBeat is
//     the server's figure both ways); the server sends EOLs when idle and
//     closes a connection that is silent past the client's interval plus
//     Config.HeartBeatGrace. A CONNECT must come within
//     Config.ConnectTimeout.
//   - SUBSCRIBE (id, destination; ack:auto only) to destinations under
//     Config.TopicPrefix, and UNSUBSCRIBE. Only the application publishes
//     (Server.Publish); a client's SEND never reaches subscribers.
//   - SEND to destinations under Config.AppPrefix, handed to Config.OnSend.
//   - MESSAGE with destination, subscription, message-id, content-length
//     and the publisher's headers (content-type).
//   - RECEIPT for every frame with a receipt header (CONNECT excepted: its
//     answer is CONNECTED); DISCONNECT is answered with its RECEIPT, then
//     the connection is closed.
//   - ERROR, with message and, when the refused frame had a receipt
//     header, receipt-id; the connection is then closed. Refused: a frame
//     before CONNECT, an unknown or unsupported command (ACK, NACK, BEGIN,
//     COMMIT, ABORT), a malformed frame, a frame, header line or header
//     count over the configured limits, a body on a frame other than
//     SEND, too many subscriptions, a failed authentication, and what the
//     application's hooks refuse.
//
// # Hooks
//
// The application plugs in three functions (their contracts are on their
// types): AuthenticateFunc turns the upgrade request and CONNECT's
// login/passcode into a principal; SendFunc handles SENDs; SubscribeFunc
// vets SUBSCRIBEs and may return a retained message, delivered at once,
// so that a subscriber that joins after a message was published still
// gets it. Server.Publish delivers to every current subscriber without
// waiting: a client whose send queue is full is disconnected and counted
// (Stats.Dropped).
//
// # Lifecycle
//
// NewServer validates the Config; ServeHTTP serves one connection on the
// request's goroutine plus one writer goroutine; Close closes every
// connection and waits for all of them.
package stomp
