package tccd

import (
	"errors"
	"fmt"
	"time"
)

// Defaults for Config.
const (
	DefaultCallTimeout     = 5 * time.Second
	DefaultRetryMin        = 100 * time.Millisecond
	DefaultRetryMax        = 30 * time.Second
	DefaultMaxParallel     = 16
	DefaultConfirmWait     = 30 * time.Second
	DefaultTimeout         = 60 * time.Second
	DefaultMaxTimeout      = 24 * time.Hour
	DefaultMarginFloor     = 200 * time.Millisecond
	DefaultMarginRTTs      = 3
	DefaultMaxLinks        = 100
	DefaultRetention       = 7 * 24 * time.Hour
	DefaultPurgeInterval   = time.Minute
	DefaultShutdownGrace   = 10 * time.Second
	DefaultRecoveryDrives  = 256
	DefaultRedriveInterval = 30 * time.Second
	DefaultInDoubtWindow   = 24 * time.Hour
)

// Config tunes the coordinator engine. The zero value of a field means its
// default; Validate rejects nonsense.
type Config struct {
	// NodeID names this coordinator as the owner of the transactions it drives.
	NodeID string
	// CallTimeout bounds one call to a participant.
	CallTimeout time.Duration
	// RetryMin and RetryMax bound the exponential back-off between retries.
	RetryMin, RetryMax time.Duration
	// MaxParallel bounds the participant calls in flight for one transaction.
	MaxParallel int
	// ConfirmWait is how long a confirm or cancel request waits for the
	// outcome before answering that it is still in progress.
	ConfirmWait time.Duration
	// DefaultTimeout is the timeout of a registered transaction that names
	// none; MaxTimeout the largest one accepted.
	DefaultTimeout, MaxTimeout time.Duration
	// MarginFloor and MarginRTTs set the expiry safety margin: confirm does
	// not start if a link expires within max(MarginFloor, MarginRTTs × the
	// recent round-trip time to its host).
	MarginFloor time.Duration
	MarginRTTs  float64
	// MaxLinks bounds the participants of one transaction.
	MaxLinks int
	// Retention is how long finished transactions stay queryable;
	// PurgeInterval how often the purge runs.
	Retention, PurgeInterval time.Duration
	// ShutdownGrace bounds how long Close lets in-flight participant calls finish.
	ShutdownGrace time.Duration
	// RecoveryDrives bounds how many recovered transactions are driven at once.
	RecoveryDrives int
	// RedriveInterval is how often decided transactions that no driver is
	// settling (one stopped on a store error) are driven again.
	RedriveInterval time.Duration
	// InDoubtWindow is how long past its link's expiry a participant in
	// doubt (a confirm sent to it may have taken effect, no definite
	// answer came) is still asked for its outcome; after that the
	// transaction ends heuristic with reason in_doubt.
	InDoubtWindow time.Duration
	// Notifier delivers outcomes to Notify URLs (webhooks); nil: a
	// transaction asking for one is refused (no secret to sign with).
	// WebhookMaxAge is how long a delivery is retried.
	Notifier      Notifier
	WebhookMaxAge time.Duration
	// BarrierWait is how long a barrier round waits for every report;
	// Barriers tells participants waiting on a key the outcome (nil: they
	// learn it by asking, over HTTP).
	BarrierWait time.Duration
	Barriers    BarrierPublisher
	// Tracer records spans of decisions and participant calls; nil: none.
	Tracer Tracer
	// Messages publishes the messages enlisted in transactions (nil: no
	// broker, and enlisting a message is refused).
	Messages MessagePublisher
	// Leaser decides which node drives which transaction; nil: a
	// StaticLeaser of NodeID (a single node owns everything).
	Leaser Leaser
	// Events receives the coordinator's changes (see Events); nil: a
	// Broker with the default sizes, reachable with Coordinator.Events.
	Events Events
	// Links decides which participant URIs are accepted: the server-side
	// request forgery guard (see Allowlist). nil applies the built-in
	// refusals of Allowlist only.
	Links LinkChecker
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.NodeID == "" {
		c.NodeID = "tccd"
	}
	def(&c.CallTimeout, DefaultCallTimeout)
	def(&c.RetryMin, DefaultRetryMin)
	def(&c.RetryMax, DefaultRetryMax)
	def(&c.ConfirmWait, DefaultConfirmWait)
	def(&c.DefaultTimeout, DefaultTimeout)
	def(&c.MaxTimeout, DefaultMaxTimeout)
	def(&c.MarginFloor, DefaultMarginFloor)
	def(&c.Retention, DefaultRetention)
	def(&c.PurgeInterval, DefaultPurgeInterval)
	def(&c.ShutdownGrace, DefaultShutdownGrace)
	def(&c.RedriveInterval, DefaultRedriveInterval)
	def(&c.InDoubtWindow, DefaultInDoubtWindow)
	def(&c.WebhookMaxAge, DefaultWebhookMaxAge)
	def(&c.BarrierWait, DefaultBarrierWait)
	if c.MaxParallel == 0 {
		c.MaxParallel = DefaultMaxParallel
	}
	if c.MarginRTTs == 0 {
		c.MarginRTTs = DefaultMarginRTTs
	}
	if c.MaxLinks == 0 {
		c.MaxLinks = DefaultMaxLinks
	}
	if c.RecoveryDrives == 0 {
		c.RecoveryDrives = DefaultRecoveryDrives
	}
	return c
}

// Validate reports every setting that makes no sense, joined.
func (c Config) Validate() error {
	var errs []error
	pos := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %v", name, d))
		}
	}
	pos("call-timeout", c.CallTimeout)
	pos("retry-min", c.RetryMin)
	pos("retry-max", c.RetryMax)
	pos("confirm-wait", c.ConfirmWait)
	pos("default-timeout", c.DefaultTimeout)
	pos("max-timeout", c.MaxTimeout)
	pos("retention", c.Retention)
	pos("purge-interval", c.PurgeInterval)
	pos("shutdown-grace", c.ShutdownGrace)
	pos("redrive-interval", c.RedriveInterval)
	pos("in-doubt-window", c.InDoubtWindow)
	pos("webhook-max-age", c.WebhookMaxAge)
	pos("barrier-wait", c.BarrierWait)
	if c.MarginFloor < 0 {
		errs = append(errs, fmt.Errorf("margin-floor must not be negative, got %v", c.MarginFloor))
	}
	if c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("retry-max (%v) must not be below retry-min (%v)", c.RetryMax, c.RetryMin))
	}
	if c.DefaultTimeout > c.MaxTimeout {
		errs = append(errs, fmt.Errorf("default-timeout (%v) must not exceed max-timeout (%v)", c.DefaultTimeout, c.MaxTimeout))
	}
	if c.MaxParallel < 1 {
		errs = append(errs, fmt.Errorf("max-parallel must be at least 1, got %d", c.MaxParallel))
	}
	if c.MarginRTTs < 0 {
		errs = append(errs, fmt.Errorf("margin-rtts must not be negative, got %v", c.MarginRTTs))
	}
	if c.MaxLinks < 1 {
		errs = append(errs, fmt.Errorf("max-links must be at least 1, got %d", c.MaxLinks))
	}
	if c.RecoveryDrives < 1 {
		errs = append(errs, fmt.Errorf("recovery-drives must be at least 1, got %d", c.RecoveryDrives))
	}
	return errors.Join(errs...)
}
