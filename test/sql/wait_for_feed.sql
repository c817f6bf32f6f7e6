-- wait_for_feed(after, timeout_ms): returns at once when the feed horizon
-- is already past after; returns after itself when the timeout ends first;
-- clear errors for bad input (nothing written, nobody left waiting);
-- cancellable by statement_timeout.  The wakeup by another session's commit
-- is in the isolation spec wait_for_feed, the not-preloaded polling and a
-- terminated waiter in test/t/007_wait_for_feed.pl.
SELECT event_store.feed_mode();

SELECT count(event_store.append_event('wait-' || i, 'Tick', '{}')) FROM generate_series(1, 3) i;
SELECT event_store.feed_horizon() AS h \gset

-- Already past: the horizon, without waiting.
SELECT event_store.wait_for_feed(0, 1000) = :h AS returns_horizon;
SELECT event_store.wait_for_feed(:h - 1, 0) = :h AS returns_horizon_no_wait;
-- Negative positions are before every event.
SELECT event_store.wait_for_feed(-5, 0) = :h AS negative_after_is_passed;
-- The default timeout is 10 s; already past, it does not wait.
SELECT event_store.wait_for_feed(:h - 1) = :h AS default_timeout;

-- Not past: the timeout ends and after comes back (also a position beyond
-- anything drawn yet).
SELECT event_store.wait_for_feed(:h, 0) = :h AS timeout_zero_returns_after;
SELECT event_store.wait_for_feed(:h, 20) = :h AS timeout_returns_after;
SELECT event_store.wait_for_feed(:h + 1000, 20) = :h + 1000 AS far_after_returns_after;
SELECT event_store._feed_waiters() AS waiters_left;

-- Bad input: 22004 / 22023, nothing written, nobody left waiting.
SELECT count(*) AS events_before FROM event_store.events \gset
\set VERBOSITY default
SELECT event_store.wait_for_feed(NULL, 1000);
SELECT event_store.wait_for_feed(:h, NULL);
SELECT event_store.wait_for_feed(:h, -1);
\set VERBOSITY sqlstate
SELECT event_store.wait_for_feed(NULL, 1000);
SELECT event_store.wait_for_feed(:h, NULL);
SELECT event_store.wait_for_feed(:h, -1);
\set VERBOSITY default
SELECT count(*) = :events_before AS nothing_written FROM event_store.events;
SELECT event_store._feed_waiters() AS waiters_left;

-- statement_timeout cancels a wait (57014); the waiter leaves the list.
SET statement_timeout = '50ms';
SELECT event_store.wait_for_feed(:h, 60000);
RESET statement_timeout;
SELECT event_store._feed_waiters() AS waiters_left;

-- Readers may wait; PUBLIC may not.
SELECT has_function_privilege('event_store_reader', 'event_store.wait_for_feed(bigint, integer)', 'EXECUTE') AS reader_may_wait;
CREATE ROLE wait_nobody;
SELECT has_function_privilege('wait_nobody', 'event_store.wait_for_feed(bigint, integer)', 'EXECUTE') AS public_may_wait;
DROP ROLE wait_nobody;

-- The consumer loop docs/reference.md shows: wait, then read what the horizon covers.
SELECT event_store.wait_for_feed(:h - 2, 1000) AS upto \gset
SELECT count(*) AS read_after_wait
  FROM event_store.read_all(:h - 2, 10) WHERE global_position <= :upto;
