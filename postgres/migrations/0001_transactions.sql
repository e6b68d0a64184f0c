-- One row per transaction. The record column holds the whole transaction
-- (record.go: versioned JSON of an explicit struct), so a field added to
-- tccd.Transaction needs no migration; the other columns are what queries
-- filter, order and lock on. Ids and states compare byte by byte
-- (COLLATE "C"): List's order and its cursor must not depend on the
-- server's locale.
CREATE TABLE tccd_transactions (
	id                   text COLLATE "C" NOT NULL PRIMARY KEY,
	state                text COLLATE "C" NOT NULL,
	-- created_at is for people and ad-hoc queries (microseconds);
	-- created_ns orders List exactly (Unix nanoseconds, as the record).
	created_at           timestamptz NOT NULL,
	created_ns           bigint NOT NULL,
	finished_at          timestamptz,
	-- version is the compare-and-set of every Update. owner, lease_until
	-- and epoch are for row leases: the node driving the transaction, how
	-- long its claim holds, and a fencing counter that a takeover raises.
	version              bigint NOT NULL,
	owner                text NOT NULL DEFAULT '',
	lease_until          timestamptz,
	epoch                bigint NOT NULL DEFAULT 0,
	notification_pending boolean NOT NULL DEFAULT false,
	created_by           text NOT NULL DEFAULT '',
	record               json NOT NULL
) WITH (fillfactor = 90); -- room for HOT updates of progress writes

-- List, one state or all, newest first; Purge, oldest first within a
-- final state (nothing finished before it was created).
CREATE INDEX tccd_transactions_state ON tccd_transactions (state, created_ns, id);
CREATE INDEX tccd_transactions_created ON tccd_transactions (created_ns, id);

-- Unfinished: only the transactions in flight, and those whose outcome's
-- notification is pending, are in this index.
CREATE INDEX tccd_transactions_unfinished ON tccd_transactions (id)
	WHERE state IN ('active', 'confirming', 'cancelling') OR notification_pending;
