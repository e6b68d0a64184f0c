-- A transaction undoing the participants that confirmed (compensating)
-- is in flight too: recovery must find it.
DROP INDEX tccd_transactions_unfinished;
CREATE INDEX tccd_transactions_unfinished ON tccd_transactions (id)
	WHERE state IN ('active', 'confirming', 'cancelling', 'compensating') OR notification_pending;
