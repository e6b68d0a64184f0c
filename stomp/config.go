package stomp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Defaults for the zero fields of Config.
const (
	DefaultAppPrefix        = "/app"
	DefaultTopicPrefix      = "/topic"
	DefaultMaxFrameSize     = 64 << 10
	DefaultMaxHeaders       = 32
	DefaultMaxHeaderLength  = 4 << 10
	DefaultMaxSubscriptions = 32
	DefaultSendQueue        = 64
	DefaultHeartBeat        = 10 * time.Second
	DefaultHeartBeatGrace   = 5 * time.Second
	DefaultConnectTimeout   = 10 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultServerName       = "tccd"
)

// AuthenticateFunc decides who a connection acts for. It is called once
// per connection, on its CONNECT (or STOMP) frame, with the HTTP request
// that opened the WebSocket (its headers, such as Authorization, and its
// TLS state) and the frame's login and passcode headers (empty when
// absent): browsers cannot set headers on a WebSocket, so a browser
// client sends its token as the passcode.
//
// The principal it returns is handed to the other hooks as is; nil is a
// valid principal. An error refuses the connection: the client gets an
// ERROR frame whose message is "authentication failed" (the error's text
// is logged, not sent) and the socket is closed.
//
// It may be called concurrently for different connections. ctx ends when
// the connection does; the connect timeout bounds the call.
type AuthenticateFunc func(ctx context.Context, r *http.Request, login, passcode string) (principal any, err error)

// SendFunc handles a SEND frame whose destination is under the
// application prefix. header holds every header of the frame (the first
// occurrence of a repeated name), destination and content-type among
// them; body is the frame's body, which the function may keep.
//
// Calls for one connection are made one at a time, in the order of its
// frames, and the connection reads nothing more until the call returns:
// a RECEIPT the client asked for is sent after it returns nil. An error
// becomes an ERROR frame whose message is the error's text, and the
// connection is closed, as STOMP requires after an ERROR: do not put
// secrets or internal details in the text. Calls for different
// connections run concurrently. The function may call Publish.
type SendFunc func(ctx context.Context, principal any, destination string, header map[string]string, body []byte) error

// SubscribeFunc is asked about every SUBSCRIBE to a destination under the
// topic prefix. An error refuses the subscription: the client gets an
// ERROR frame whose message is the error's text, and the connection is
// closed. A non-nil message is a retained message: it is delivered to
// this subscription at once, as a MESSAGE on destination.
//
// The subscription is registered before the call, and messages published
// to it meanwhile are held back and delivered after the retained message
// (or discarded when the subscription is refused). So an application
// that makes its retained state visible before it publishes never loses
// a message to a subscriber that joins at the same time; such a
// subscriber may receive the same news twice (retained and published),
// so messages should be idempotent.
//
// Calls follow the same ordering and concurrency rules as SendFunc.
type SubscribeFunc func(ctx context.Context, principal any, destination string) (retained *Message, err error)

// Message is a message the application delivers: headers it adds to the
// MESSAGE frame (content-type, say) and the body.
type Message struct {
	Header map[string]string
	Body   []byte
}

// Config configures a Server. The zero value of each field means its
// default.
type Config struct {
	// Authenticate decides who a connection acts for. Nil accepts every
	// CONNECT with a nil principal.
	Authenticate AuthenticateFunc
	// OnSend handles SENDs under AppPrefix. Nil refuses every SEND.
	OnSend SendFunc
	// OnSubscribe vets SUBSCRIBEs under TopicPrefix. Nil accepts every
	// one, with no retained message.
	OnSubscribe SubscribeFunc

	// AppPrefix is the destination prefix SENDs must use: a SEND to
	// AppPrefix+"/…" goes to OnSend, any other is refused. Default "/app".
	AppPrefix string
	// TopicPrefix is the destination prefix SUBSCRIBEs must use: a
	// SUBSCRIBE to TopicPrefix+"/…" is accepted (subject to OnSubscribe),
	// any other is refused. Default "/topic". Clients can never send to
	// subscribers: only the application publishes.
	TopicPrefix string

	// MaxFrameSize bounds a frame from a client, command to NUL. Default
	// 64 KiB.
	MaxFrameSize int
	// MaxHeaders bounds the header lines of a frame. Default 32.
	MaxHeaders int
	// MaxHeaderLength bounds one header line, as sent. Default 4 KiB.
	MaxHeaderLength int
	// MaxSubscriptions bounds the subscriptions of a connection. Default 32.
	MaxSubscriptions int
	// SendQueue is how many frames may wait to be written to one
	// connection. A Publish that finds the queue full closes the
	// connection instead of waiting (Stats.Dropped). Default 64.
	SendQueue int

	// HeartBeat is the interval the server offers in CONNECTED for both
	// directions: it can send heart-beats that often, and wants the
	// client's at least that often. Negotiation follows STOMP (the larger
	// of the two sides' figures; 0 on either side turns a direction off).
	// Default 10s; negative turns heart-beats off.
	HeartBeat time.Duration
	// HeartBeatGrace is how long past the negotiated interval the server
	// waits for a silent client before closing its connection. Default 5s.
	HeartBeatGrace time.Duration
	// ConnectTimeout bounds the time from the WebSocket upgrade to the
	// CONNECT frame, authentication included. Default 10s.
	ConnectTimeout time.Duration
	// WriteTimeout bounds one write to a client. Default 10s.
	WriteTimeout time.Duration

	// OriginPatterns lists the browser origins (host patterns, as in
	// github.com/coder/websocket's AcceptOptions) allowed besides the
	// request's own host. Clients that send no Origin header, as servers
	// do, are not checked.
	OriginPatterns []string
	// ServerName is the server header of CONNECTED. Default "tccd".
	ServerName string
	// Logger receives connection-level events. Default: discard.
	Logger *slog.Logger
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defd := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	if c.AppPrefix == "" {
		c.AppPrefix = DefaultAppPrefix
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = DefaultTopicPrefix
	}
	def(&c.MaxFrameSize, DefaultMaxFrameSize)
	def(&c.MaxHeaders, DefaultMaxHeaders)
	def(&c.MaxHeaderLength, DefaultMaxHeaderLength)
	def(&c.MaxSubscriptions, DefaultMaxSubscriptions)
	def(&c.SendQueue, DefaultSendQueue)
	defd(&c.HeartBeat, DefaultHeartBeat)
	defd(&c.HeartBeatGrace, DefaultHeartBeatGrace)
	defd(&c.ConnectTimeout, DefaultConnectTimeout)
	defd(&c.WriteTimeout, DefaultWriteTimeout)
	if c.ServerName == "" {
		c.ServerName = DefaultServerName
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem of c at once. Zero fields are valid:
// they take their defaults.
func (c Config) Validate() error {
	var errs []error
	prefix := func(name, p string) {
		if p != "" && (!strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/")) {
			errs = append(errs, fmt.Errorf("%s %q: want a path starting with / and not ending with /", name, p))
		}
	}
	prefix("AppPrefix", c.AppPrefix)
	prefix("TopicPrefix", c.TopicPrefix)
	for _, f := range []struct {
		name string
		v    int
	}{{"MaxFrameSize", c.MaxFrameSize}, {"MaxHeaders", c.MaxHeaders}, {"MaxHeaderLength", c.MaxHeaderLength}, {"MaxSubscriptions", c.MaxSubscriptions}, {"SendQueue", c.SendQueue}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s %d: negative", f.name, f.v))
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"HeartBeatGrace", c.HeartBeatGrace}, {"ConnectTimeout", c.ConnectTimeout}, {"WriteTimeout", c.WriteTimeout}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s %s: negative", f.name, f.v))
		}
	}
	if c.HeartBeat > 0 && c.HeartBeat < time.Millisecond {
		errs = append(errs, fmt.Errorf("HeartBeat %s: below STOMP's unit of one millisecond", c.HeartBeat))
	}
	return errors.Join(errs...)
}

// under reports whether destination lies under prefix: the prefix, a
// slash, and at least one more byte.
func under(destination, prefix string) bool {
	return len(destination) > len(prefix)+1 &&
		strings.HasPrefix(destination, prefix) && destination[len(prefix)] == '/'
}
