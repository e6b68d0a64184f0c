package participant_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"sync"
	"testing"
)

// observed is a *sql.DB whose connections report their first use (a
// BEGIN or a statement) after arm: the moment a request under test has
// reached the database, for instance to wait there for a lock that the
// test holds. It is how a test orders "the request is waiting" before
// "the test moves the clock" without sleeping.
type observed struct {
	drv driver.Driver
	dsn string

	mu   sync.Mutex
	used chan struct{} // closed at the first use after arm; nil when not armed
}

// observe opens another *sql.DB on sp's database, observed, and returns a
// copy of sp that uses it.
func observe(t testing.TB, sp space) (space, *observed) {
	t.Helper()
	plain, err := sql.Open(sp.driver, sp.dsn)
	if err != nil {
		t.Fatal(err)
	}
	o := &observed{drv: plain.Driver(), dsn: sp.dsn}
	plain.Close()
	db := sql.OpenDB(o)
	t.Cleanup(func() { db.Close() })
	sp.db = db
	return sp, o
}

// arm returns a channel closed at the next use of a connection.
func (o *observed) arm() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.used = make(chan struct{})
	return o.used
}

func (o *observed) use() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.used != nil {
		close(o.used)
		o.used = nil
	}
}

func (o *observed) Connect(context.Context) (driver.Conn, error) {
	c, err := o.drv.Open(o.dsn)
	if err != nil {
		return nil, err
	}
	return &observedConn{Conn: c, o: o}, nil
}

func (o *observed) Driver() driver.Driver { return o.drv }

// observedConn passes everything to the driver's connection, reporting
// each begin and statement to its observed.
type observedConn struct {
	driver.Conn
	o *observed
}

func (c *observedConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.o.use()
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		return b.BeginTx(ctx, opts)
	}
	return c.Conn.Begin() // a driver without BeginTx
}

func (c *observedConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	c.o.use()
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return c.Conn.Prepare(query)
}

func (c *observedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	c.o.use()
	return e.ExecContext(ctx, query, args)
}

func (c *observedConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	c.o.use()
	return q.QueryContext(ctx, query, args)
}

func (c *observedConn) CheckNamedValue(v *driver.NamedValue) error {
	if n, ok := c.Conn.(driver.NamedValueChecker); ok {
		return n.CheckNamedValue(v)
	}
	return driver.ErrSkip
}

func (c *observedConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *observedConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *observedConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}
