package tccd_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tccd/tccd"
)

// TestParticipantOutcome: the engine's answer to a participant that asks
// for its outcome. A client that did not create the transaction gets it
// only by naming one of its participants' URIs (in any spelling of it);
// otherwise the same ENotFound as for a transaction that does not exist.
// The answer is the record's states, read at the time.
func TestParticipantOutcome(t *testing.T) {
	e := newEnv(t, testConfig(), 2)
	creator := tccd.WithPrincipal(context.Background(), tccd.Principal{Name: "shop", Role: tccd.RoleClient})
	other := tccd.WithPrincipal(context.Background(), tccd.Principal{Name: "payments", Role: tccd.RoleClient})
	comp := e.parts[0].link(time.Minute)
	comp.Style = tccd.StyleCompensate
	tcc := e.parts[1].link(time.Minute)
	tx, err := e.coord.Begin(creator, tccd.BeginRequest{Timeout: time.Minute, Participants: []tccd.Link{comp, tcc}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.coord.Get(other, tx.ID); tccd.ErrorCode(err) != tccd.ENotFound {
		t.Fatalf("Get by another client = %v; want ENotFound", err)
	}
	respelled := strings.Replace(comp.URI, "http://", "HTTP://", 1)
	for _, ctx := range []context.Context{creator, other, context.Background()} {
		o, err := e.coord.ParticipantOutcome(ctx, tx.ID, respelled)
		if err != nil || o.Transaction != tx.ID || o.State != tccd.StateActive || o.URI != comp.URI || o.ParticipantState != tccd.ParticipantPending {
			t.Errorf("active: %+v, %v", o, err)
		}
	}
	if _, err := e.coord.Confirm(creator, tx.ID, nil); err != nil {
		t.Fatal(err)
	}
	for _, l := range []tccd.Link{comp, tcc} {
		if o, err := e.coord.ParticipantOutcome(other, tx.ID, l.URI); err != nil || o.State != tccd.StateConfirmed || o.ParticipantState != tccd.ParticipantConfirmed {
			t.Errorf("confirmed, %s: %+v, %v", l.URI, o, err)
		}
	}
	missing, err1 := e.coord.ParticipantOutcome(other, "01NOSUCHTRANSACTION0000000", comp.URI)
	_, err2 := e.coord.ParticipantOutcome(other, tx.ID, e.parts[0].srv.URL+"/reservations/nope")
	for _, err := range []error{err1, err2} {
		var te *tccd.Error
		if tccd.ErrorCode(err) != tccd.ENotFound || !errors.As(err, &te) || te.Field != "uri" || te.Tx != nil {
			t.Errorf("not found: %v; want ENotFound, field uri, no transaction", err)
		}
	}
	if missing != (tccd.ParticipantOutcome{}) {
		t.Errorf("not found returned %+v", missing)
	}
	if _, err := e.coord.ParticipantOutcome(other, tx.ID, "urn:tccd:message:1"); tccd.ErrorCode(err) != tccd.EInvalid {
		t.Errorf("a message URN: %v; want EInvalid", err)
	}
}
