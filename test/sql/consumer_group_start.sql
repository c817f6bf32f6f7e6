-- issue 29: where a consumer group member starts when it has no checkpoint
-- of its own.  It must never skip an event of its streams that no one
-- acknowledged: a member of the same group size handles other streams, so
-- its checkpoint says nothing about this member's; only a group size whose
-- members all acknowledged up to a position says that every event up to
-- there was handled.  In a database of its own, so positions are known.
SELECT current_database() AS orig_db \gset
CREATE DATABASE es_consumer_group_start_test;
\c es_consumer_group_start_test
SET client_min_messages = warning;
CREATE EXTENSION event_store;
RESET client_min_messages;

-- The streams used, and the member that receives each at sizes 2 and 3.
SELECT s AS stream_id, event_store.consumer_group_member(s, 2) AS of_2,
       event_store.consumer_group_member(s, 3) AS of_3
  FROM unnest(ARRAY['acct-1', 'acct-2', 'acct-3', 'acct-4', 'acct-6']) s;

-- 1. The report: member 0 of 2 acknowledges past member 1's event before
--    member 1 ever polls.  Member 1 still receives it (it started from
--    member 0's checkpoint before 1.12 and never saw position 4).
SELECT event_store.append_event(s, 'Happened', '{}')
  FROM unnest(ARRAY['acct-1', 'acct-1', 'acct-1', 'acct-2', 'acct-1', 'acct-1']) WITH ORDINALITY AS a(s, n)
 ORDER BY n;
SELECT event_store.subscribe('pair', retry_delay => '1 hour');
SELECT global_position, stream_id FROM event_store.poll('pair', 100, 0, 2);
SELECT event_store.ack('pair', 6, 0, 2);
SELECT global_position, stream_id FROM event_store.poll('pair', 100, 1, 2);
-- Its checkpoint is its own: position 4 is not "already acknowledged"
-- (55000 before 1.12); the nack counts, and the event waits for its retry
-- (an hour away) past member 1's checkpoint.
SELECT event_store.nack('pair', 4, 'm1 failed', 1, 2);
SELECT event_store.ack('pair', 4, 1, 2);
SELECT consumer_group_member, consumer_group_size, checkpoint
  FROM event_store.subscription_status WHERE name = 'pair' ORDER BY consumer_group_member;
SELECT count(*) AS retries_left FROM event_store.subscription_retries WHERE name = 'pair';
SELECT count(*) AS member_0_again FROM event_store.poll('pair', 100, 0, 2);
SELECT count(*) AS member_1_again FROM event_store.poll('pair', 100, 1, 2);

-- 2. Resizing.  More events, on five streams; three subscriptions consumed
--    by a group of 2, each in another state, then by a group of 3.
SELECT count(event_store.append_event('acct-' || s, 'Happened', jsonb_build_object('r', r)))
  FROM generate_series(1, 4) r, unnest(ARRAY[1, 2, 3, 4, 6]) s;
SELECT max(global_position) AS last FROM event_store.events \gset
SELECT event_store.subscribe('old_full');     -- both old members acknowledged, member 1 less far
SELECT event_store.subscribe('old_missing');  -- member 1 of 2 never acknowledged anything
SELECT event_store.subscribe('old_sizes');    -- sizes 1 and 2 both fully acknowledged
SELECT event_store.ack('old_full', :last, 0, 2);
SELECT event_store.ack('old_full', 12, 1, 2);
SELECT event_store.ack('old_missing', :last, 0, 2);
SELECT event_store.ack('old_sizes', 8, 0, 1);
SELECT event_store.ack('old_sizes', 20, 0, 2);
SELECT event_store.ack('old_sizes', 14, 1, 2);

-- Acknowledged = some member of some size whose stream it is has a
-- checkpoint at or past it.  Worked out here from the checkpoints, not by
-- the function under test.
CREATE TEMP TABLE acknowledged AS
SELECT s.name, e.global_position, e.stream_id,
       EXISTS (SELECT 1 FROM event_store.subscription_checkpoints c
                WHERE c.name = s.name
                  AND c.consumer_group_member = event_store.consumer_group_member(e.stream_id, c.consumer_group_size)
                  AND c.position >= e.global_position) AS acked
  FROM event_store.subscriptions s, event_store.events e
 WHERE s.name IN ('old_full', 'old_missing', 'old_sizes');

-- The group becomes 3.  Member 0 polls and acknowledges everything first:
-- members 1 and 2 must not start from its checkpoint either.
CREATE TEMP TABLE delivered (name text, member int, global_position bigint, stream_id text);
INSERT INTO delivered
SELECT s, 0, e.global_position, e.stream_id
  FROM unnest(ARRAY['old_full', 'old_missing', 'old_sizes']) s, event_store.poll(s, 1000, 0, 3) e;
SELECT event_store.ack(s, :last, 0, 3) FROM unnest(ARRAY['old_full', 'old_missing', 'old_sizes']) s;
INSERT INTO delivered
SELECT s, m, e.global_position, e.stream_id
  FROM unnest(ARRAY['old_full', 'old_missing', 'old_sizes']) s, generate_series(1, 2) m,
       event_store.poll(s, 1000, m, 3) e;
-- Nothing that was not acknowledged is skipped, and each event reaches the
-- member of 3 whose stream it is; events acknowledged at size 2 may come
-- again (duplicates: at least once).
SELECT a.name,
       count(*) FILTER (WHERE NOT a.acked) AS unacknowledged,
       count(*) FILTER (WHERE NOT a.acked AND d.global_position IS NULL) AS skipped,
       count(*) FILTER (WHERE a.acked AND d.global_position IS NOT NULL) AS delivered_again,
       count(*) FILTER (WHERE d.member IS DISTINCT FROM event_store.consumer_group_member(a.stream_id, 3)
                          AND d.global_position IS NOT NULL) AS wrong_member
  FROM acknowledged a
  LEFT JOIN delivered d ON d.name = a.name AND d.global_position = a.global_position
 GROUP BY a.name ORDER BY a.name;
-- Where each new member started: after the lowest checkpoint of the one
-- size whose members all acknowledged, the higher of two such sizes, or
-- at the beginning when an old member never acknowledged anything.
SELECT name, member, min(global_position) AS first_delivered, count(*) AS delivered
  FROM delivered GROUP BY name, member ORDER BY name, member;
-- A new member's start is its checkpoint for nack: an event before it is
-- already acknowledged (55000), one after it is not.
\set VERBOSITY sqlstate
SELECT min(global_position) AS first_acct_3 FROM event_store.events WHERE stream_id = 'acct-3' \gset
SELECT event_store.nack('old_full', :first_acct_3, 'x', 2, 3);
\set VERBOSITY default
SELECT event_store.nack('old_full', :first_acct_3, 'x', 2, 3);
SELECT event_store.nack('old_full', (SELECT min(global_position) FROM delivered WHERE name = 'old_full' AND member = 2), 'x', 2, 3);

-- 3. A group that should start at the end of the log: one ack without a
--    group (size 1, member 0) before its members first poll; they start
--    there, and a new event still reaches its member.
SELECT event_store.subscribe('from_now');
SELECT event_store.ack('from_now', :last);
SELECT count(*) AS old_events_delivered
  FROM generate_series(0, 1) m, event_store.poll('from_now', 1000, m, 2);
SELECT event_store.append_event('acct-2', 'Happened', '{}') AS acct_2_version;
SELECT m AS member, stream_id FROM generate_series(0, 1) m, event_store.poll('from_now', 1000, m, 2);

\c :orig_db
DROP DATABASE es_consumer_group_start_test;
