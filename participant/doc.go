// Package participant turns an application's reservation logic into the TCC
// participant contract that tccd (and any Atomikos "TCC for REST"
// coordinator) drives:
//
//	POST   <Path>        try     → 201, Location: <uri>, Link: <uri>; rel="tcc"; expires="…",
//	                               Tcc-Expires: …, {"participantLink":{"uri","expires","rel":"tcc"},"data":…}
//	PUT    <Path>/{id}   confirm → 204 (again 204 if repeated); 404 once cancelled, expired or unknown
//	DELETE <Path>/{id}   cancel  → 204 (again 204 if repeated); 404 if never tried; 409 if confirmed
//	GET    <Path>/{id}   the bookkeeping row as JSON, for diagnosis
//
// A try whose id (Config.ReservationID) names a reservation that still
// holds or is confirmed is answered 200 with the same link and data, and
// the application's Try does not run again.
//
// and cancels on its own, with an expiry sweeper (Participant.Run), every
// reservation left tried past its expiry. Errors are problem+json.
//
// The application writes three functions over its own *sql.DB — Try,
// Confirm and Cancel, each given a *sql.Tx — and the kit owns the
// transaction: BEGIN, its bookkeeping, the application's function,
// COMMIT, all one local transaction. The business change and the
// bookkeeping commit or roll back together. Any database/sql driver works;
// the kit imports none: say which SQL dialect it speaks (PostgreSQL —
// through pgx, use github.com/jackc/pgx/v5/stdlib —, SQLite, MySQL or
// MariaDB). Helpers cover the two usual reservation patterns: StateItem
// (an item moves AVAILABLE → RESERVED → SOLD) and Quantity (an amount is
// deducted and held).
//
// # The bookkeeping table
//
// One row per reservation id, in the application's database (Schema gives
// the DDL per dialect, Migrate runs it; New refuses to start without the
// table):
//
//	id PRIMARY KEY, state, expires_at, created_at, updated_at, data, scope   (times: Unix ms)
//
// where data is the try's answer data, kept to answer a retried try alike,
// and scope the values of Config.Path's wildcards the reservation was
// tried under: a request naming the id under other values answers 404.
// Migrate also upgrades a table made by an earlier version of the kit;
// New refuses such a table and names the ALTER TABLE to run.
//
// with states tried, confirmed, cancelled, expired (cancelled by the
// sweeper) and void (cancelled before any try). The only changes are
// insert-as-tried (try), insert-as-void (cancel of an unknown id) and
// tried → confirmed | cancelled | expired, each a guarded UPDATE … WHERE
// state = 'tried', so that of two racing requests exactly one changes the
// row and runs business logic.
//
// # The three anomalies
//
// This is the sub-transaction barrier of DTM and the TCC fence of Seata,
// reduced to one row per reservation. Every operation writes or locks the
// row first and runs the application's function second, in the same
// transaction; the primary key serialises operations on one id. No
// operation that may insert the id locks it with SELECT … FOR UPDATE
// beforehand (under MySQL's repeatable read that takes a gap lock, and two
// such transactions inserting deadlock).
//
//   - Try inserts the row as tried, unless the id exists ("ON CONFLICT DO
//     NOTHING", "INSERT IGNORE" on MySQL), then calls Try. If the id exists
//     the try is not run: a live reservation under that id is answered
//     again (200, a retried try); a cancelled, expired or void one refuses
//     the try with 409 — the hanging try, whose cancel came first.
//   - Confirm locks the row (SELECT … FOR UPDATE; on SQLite the write
//     lock), and only then reads the clock and judges: a tried row whose
//     expiry is still ahead moves to confirmed and Confirm runs; a
//     confirmed one is a repeated confirm (204, nothing run again); an
//     expired, cancelled, void or missing one answers 404. Judging after
//     the lock means that a confirm that waited for the lock past the
//     expiry does not confirm, however long it waited.
//   - Cancel first inserts the row as void unless the id exists (on MySQL
//     with ON DUPLICATE KEY UPDATE, which locks the existing row
//     exclusively and so cannot deadlock with the update that follows),
//     then locks and reads it, moves tried → cancelled and only then calls
//     Cancel. A void row is the empty cancel: nothing is run, the answer is
//     404 (which a coordinator takes as "cancelled"), and the row refuses a
//     later try of that id until it expires (MaxTTL). A row already
//     cancelled or expired answers 204 (repeated cancel); a confirmed one
//     409: a cancel never undoes a confirm.
//   - The sweeper moves tried → expired where expires_at has passed and
//     calls Cancel, one transaction per reservation.
//
// A failing Confirm or Cancel rolls back the move with it and answers 500:
// the reservation is still tried and the coordinator's retry runs it
// again. A deadlock or busy database is retried a few times, then answered
// 503 with Retry-After.
//
// # Barrier mode
//
// A confirm of a barrier-mode transaction (forsrc's all-confirmed
// barrier) carries the header Tcc-Barrier with the key of the
// coordinator's round. The kit then applies the confirm in its local
// transaction exactly as above but does not commit: it reports
// "confirmed" to the coordinator (POST <Config.Coordinator>/api/v1/barriers/<key>,
// with Config.CoordinatorToken as a bearer token if set), keeps the
// transaction open, and waits for the round's outcome:
//
//   - "commit": every participant of the round reported confirmed and the
//     coordinator recorded it; the kit commits and answers 204;
//   - "abort", or no outcome within Config.BarrierWait: the kit rolls back
//     and answers 503; the coordinator runs a later round;
//   - the application's Confirm failed: the kit rolls back, reports
//     "failed" with the error's message, and answers 409; the coordinator
//     aborts the round and cancels the transaction, so nobody commits.
//
// A repeated confirm of a reservation already confirmed answers 204 at
// once, without a report; one that finds it still tried (a crash between
// report and commit rolled it back) applies it again, reports again with
// the same key and, the round being committed, commits at once. Without
// Config.Coordinator a barrier-mode confirm is refused with 500 and
// logged. While it waits, the local transaction keeps its locks: the
// reservation's row and what the application's Confirm wrote — on SQLite
// the whole database, so one SQLite database serves one barrier confirm at
// a time, and a transaction must not hold two of its reservations.
//
// # Reservation ids
//
// By default the kit makes a random id at each try (NewID). An application
// may choose it instead (Config.ReservationID), for instance derived from
// the inbound transaction id and the resource (DeriveID): then a retried
// try lands on the same reservation, and an initiator that lost a try's
// answer can still cancel it — this is where the empty cancel and the
// hanging try happen in practice; with random ids they cannot. A derived
// id names one reservation: two reservations of one resource type in one
// transaction need distinct parts (DeriveID(tx, "seat", "12A") and
// DeriveID(tx, "seat", "12B")), or the second try is answered as a repeat
// of the first and reserves nothing.
//
// # Expiry and time
//
// Expiry is decided by the kit's clock (Config.Now), stored as integers:
// confirm succeeds while now < expires_at, now read once the row is
// locked, and the sweeper cancels once now >= expires_at; the link's
// expires is exactly expires_at. A Reservation.TTL above Config.MaxTTL
// is cut to MaxTTL, and the link's expires says so; a service that takes
// the lifetime from its caller (a ?ttl= parameter) should rather refuse
// more than MaxTTL with a 400, as the examples do, than grant less in
// silence. Run several replicas if you like: the guarded updates make
// them safe together.
//
// # Cleanup
//
// Rows stay after they settle, so that repeated calls keep their answers:
// a coordinator repeats a confirm whose answer it lost long after the
// expiry, and reads 404 as "cancelled"; an initiator repeats a try with a
// derived id, and a void or cancelled row is what refuses a hanging try.
// Cleanup (or Run with Config.Retention) deletes a settled row only once
// its expiry (a void row's: the end of its refusal) lies further in the
// past than the retention, which must be at least MinRetention (48 hours;
// a week is a good choice). Without Retention or Cleanup the table grows
// without end: every DELETE of an unknown id adds a void row.
//
// # SQLite
//
// SQLite allows one writer at a time. Open it with a busy timeout and
// immediate transactions so that concurrent requests wait instead of
// failing, e.g. with modernc.org/sqlite:
//
//	file:app.db?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate
package participant
