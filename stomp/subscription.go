package stomp

import "sync"

// subscription is one SUBSCRIBE of a connection.
type subscription struct {
	c       *conn
	id      string
	dest    string
	version version // the connection's, fixed before any subscription

	mu     sync.Mutex
	active bool     // OnSubscribe has accepted it
	held   [][]byte // MESSAGE frames published before it was active
}

// deliver queues a published message for the subscription, or holds it
// until the subscription is accepted. It never waits.
func (sub *subscription) deliver(extra []header, body []byte) bool {
	data := sub.message(extra, body)
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if !sub.active {
		if len(sub.held) >= cap(sub.c.out) {
			sub.c.drop()
			return false
		}
		sub.held = append(sub.held, data)
		return true
	}
	return sub.c.offer(data)
}

// activate delivers the retained message, then what was held back, and
// lets later messages through.
func (sub *subscription) activate(retained *Message) {
	var first []byte
	if retained != nil {
		first = sub.message(extraHeaders(retained.Header), retained.Body)
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	sub.active = true
	if first != nil && !sub.c.offer(first) {
		return
	}
	for _, data := range sub.held {
		if !sub.c.offer(data) {
			return
		}
	}
	sub.held = nil
}

// message encodes a MESSAGE frame for the subscription.
func (sub *subscription) message(extra []header, body []byte) []byte {
	hs := make([]header, 0, len(extra)+4)
	hs = append(hs,
		header{hdrDestination, sub.dest},
		header{hdrSubscription, sub.id},
		header{hdrMessageID, sub.c.s.nextID()},
	)
	hs = append(hs, extra...)
	return appendFrame(nil, &frame{command: cmdMessage, headers: withBody(hs, body), body: body}, sub.version)
}
