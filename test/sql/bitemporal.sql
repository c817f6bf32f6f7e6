SET timezone = 'UTC';
-- In a database of its own: the log is append-only, so the events of this
-- test would otherwise stay in the shared one for the tests that follow.
\set own_db es_bitemporal_test
\i test/sql/include/own_db.sql
SET timezone = 'UTC';
-- Bitemporal folds: "as of valid time V, as known at transaction time K":
-- events with recorded_at <= K and occurred_at <= V, folded in
-- (occurred_at, stream_version) order.

-- An account.  Valid times (occurred_at) are given; transaction times are
-- the store's.  The correction for 15 March arrives after the entry of
-- 31 March (a late, backdated event).
SELECT event_store.append_event('account-7', 'Opened',    '{"balance": 0,   "owner": "Ada"}', occurred_at => '2026-03-01 09:00+00');
SELECT event_store.append_event('account-7', 'Balance',   '{"balance": 100}',              occurred_at => '2026-03-10 09:00+00');
SELECT event_store.append_event('account-7', 'Balance',   '{"balance": 250}',              occurred_at => '2026-03-31 09:00+00');
SELECT recorded_at AS k3 FROM event_store.events WHERE stream_id = 'account-7' AND stream_version = 3 \gset
SELECT event_store.append_event('account-7', 'Corrected', '{"balance": 80, "note": "fee"}', occurred_at => '2026-03-15 09:00+00');
SELECT recorded_at AS k4 FROM event_store.events WHERE stream_id = 'account-7' AND stream_version = 4 \gset
SELECT event_store.append_event('account-7', 'Balance',   '{"balance": 300}',              occurred_at => '2026-04-02 09:00+00');

SELECT stream_version, event_type, occurred_at FROM event_store.events
 WHERE stream_id = 'account-7' ORDER BY stream_version;

-- What was the balance on 31 March, as known before the correction arrived?
SELECT event_store.state_bitemporal('account-7', '2026-03-31 23:59+00', :'k3');
-- ... and as known after it: the correction occurred before the 31 March
-- entry, so it is folded first and 250 stands.
SELECT event_store.state_bitemporal('account-7', '2026-03-31 23:59+00', :'k4');
-- On 20 March, as known now: the backdated correction counts.
SELECT event_store.state_bitemporal('account-7', '2026-03-20 00:00+00', NULL);
-- On 20 March, as known before the correction: it does not.
SELECT event_store.state_bitemporal('account-7', '2026-03-20 00:00+00', :'k3');
-- Valid time before the first event, transaction time before the first append.
SELECT event_store.state_bitemporal('account-7', '2026-02-01', NULL) IS NULL AS before_valid,
       event_store.state_bitemporal('account-7', NULL, '2000-01-01') IS NULL AS before_known;
-- The late correction is folded by valid time, not after the 31 March
-- entry as the version order of state_as_of has it.
SELECT event_store.state_bitemporal('account-7', NULL, :'k4') AS bitemporal,
       event_store.state_as_of('account-7', :'k4') AS version_order;

-- fold_bitemporal with a user reducer shows the order events are folded in.
CREATE FUNCTION trail(s text[], e event_store.events) RETURNS text[]
LANGUAGE sql IMMUTABLE RETURN s || (e.stream_version::text || ':' || e.event_type);
SELECT event_store.fold_bitemporal('trail(text[],event_store.events)', '{}'::text[], 'account-7', NULL, NULL);
SELECT event_store.fold_bitemporal('trail(text[],event_store.events)', '{}'::text[], 'account-7', '2026-03-31 23:59+00', :'k4');
SELECT event_store.fold_bitemporal('trail(text[],event_store.events)', '{}'::text[], 'account-7', '2026-03-31 23:59+00', :'k3');
SELECT event_store.fold_bitemporal('trail(text[],event_store.events)', '{start}'::text[], 'no-such-stream', NULL, NULL);

-- Same valid time: version order breaks the tie.
SELECT event_store.append('tie-1', ARRAY[
    event_store.event('A', '{"v": 1}', occurred_at => '2026-01-01'),
    event_store.event('B', '{"v": 2}', occurred_at => '2026-01-01'),
    event_store.event('C', '{"v": 0}', occurred_at => '2025-12-31')]);
SELECT event_store.fold_bitemporal('trail(text[],event_store.events)', '{}'::text[], 'tie-1', NULL, NULL);
SELECT event_store.state_bitemporal('tie-1', NULL, NULL);

-- Bitemporal equals the SQL formulation at many (valid, known) pairs.
SELECT bool_and(event_store.state_bitemporal('account-7', v, k) IS NOT DISTINCT FROM
                (SELECT event_store.merge_patch_agg(e.data ORDER BY e.occurred_at, e.stream_version)
                   FROM event_store.events e
                  WHERE e.stream_id = 'account-7' AND e.recorded_at <= k AND e.occurred_at <= v)) AS matches_sql
  FROM (SELECT occurred_at + d AS v FROM event_store.events, (VALUES (interval '-1 hour'), ('0'), ('1 hour')) x(d)
         WHERE stream_id = 'account-7') vs,
       (SELECT recorded_at + d AS k FROM event_store.events, (VALUES (interval '-1 microsecond'), ('0')) x(d)
         WHERE stream_id = 'account-7') ks;

-- Errors are those of fold().
SELECT event_store.fold_bitemporal('trail(text[],event_store.events)', '{}'::jsonb, 'account-7', NULL, NULL);
SELECT event_store.state_bitemporal(NULL, NULL, NULL);

\c :orig_db
DROP DATABASE es_bitemporal_test;
