-- event_store_messagedb 1.3 -> 1.4.
\echo Use "ALTER EXTENSION event_store_messagedb UPDATE TO '1.4'" to load this file. \quit

------------------------------------------------------------------------------
-- issue 28 item 1: the messages view hides what the reads hide
--
-- message_store.messages (and the six summary views built on it) showed
-- every stored message, also those of soft-deleted, hard-deleted and
-- truncated streams and those outside a stream's max_count or max_age,
-- while get_stream_messages, get_category_messages and
-- get_last_stream_message (1.3) hide them.  In Message DB the messages
-- table is the store itself and nothing is ever deleted, so a Message DB
-- client or tool that reads the table (mdb-print-messages, the summaries)
-- expects it to hold exactly the messages the functions can return.  The
-- view now applies the same check against the stream's row in
-- event_store.streams as the reads; the raw log stays readable in
-- event_store.events.  CREATE OR REPLACE keeps the view's columns,
-- privileges and dependent views.
------------------------------------------------------------------------------
CREATE OR REPLACE VIEW message_store.messages AS
SELECT e.global_position,
       e.stream_version - 1 AS position,
       (e.recorded_at AT TIME ZONE 'UTC') AS time,
       e.stream_id AS stream_name,
       e.event_type AS type,
       e.data,
       e.metadata,
       e.event_id AS id
  FROM event_store.events e
 WHERE NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
         AND h.truncate_before IS NOT NULL
         AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
              OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
              OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)));
COMMENT ON VIEW message_store.messages IS 'The event log in the shape of Message DB''s messages table, without the messages that stream deletion, truncation, max_count and max_age hide (read-only; write with write_message).';
