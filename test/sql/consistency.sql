-- Consistency beyond one stream (event_store 1.2): event tags,
-- append_all (several streams, all or nothing) and append_if /
-- read_by_tags (query-based append conditions).
CREATE FUNCTION pg_temp.try(cmd text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    result text;
    state text;
    msg text;
    detail text;
    context text;
BEGIN
    EXECUTE cmd INTO result;
    RETURN 'ok: ' || coalesce(result, 'NULL');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
                            context = PG_EXCEPTION_CONTEXT;
    RETURN state || ': ' || regexp_replace(msg || CASE WHEN detail <> '' THEN ' (' || detail || ')' ELSE '' END,
                                           'position [0-9]+', 'position N', 'g')
           || coalesce(' [' || substring(context from 'append [0-9]+ of append_all[^\n]*') || ']', '');
END
$f$;

------------------------------------------------------------------------------
-- Tags
------------------------------------------------------------------------------
SELECT event_store.append('student-ada', ARRAY[
    event_store.event('StudentRegistered', '{"name": "Ada"}', tags => ARRAY['student:ada'])]);
SELECT event_store.append_event('course-math', 'CourseDefined', '{"capacity": 2}',
                                tags => ARRAY['course:math']);
SELECT stream_id, event_type, tags FROM event_store.events
 WHERE stream_id IN ('student-ada', 'course-math') ORDER BY global_position;
-- untagged events keep tags NULL
SELECT event_store.append_event('untagged-1', 'E', '{}');
SELECT tags IS NULL AS no_tags FROM event_store.events WHERE stream_id = 'untagged-1';
-- every partition has the (partial) GIN index on tags
SELECT bool_and(EXISTS (SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                         JOIN pg_am am ON am.oid = ic.relam
                        WHERE i.indrelid = p.partition AND am.amname = 'gin' AND i.indpred IS NOT NULL))
       AS all_partitions_have_tag_index
  FROM event_store.partition_info p;

------------------------------------------------------------------------------
-- append_all
------------------------------------------------------------------------------
-- a transfer between two accounts, both new
SELECT * FROM event_store.append_all(ARRAY[
    ROW('account-1', 0, ARRAY[event_store.event('Opened', '{"balance": 100}')])::event_store.stream_append,
    ROW('account-2', 0, ARRAY[event_store.event('Opened', '{"balance": 0}')])::event_store.stream_append]);
SELECT * FROM event_store.append_all(ARRAY[
    ROW('account-2', 1, ARRAY[event_store.event('Credited', '{"amount": 30}')])::event_store.stream_append,
    ROW('account-1', 1, ARRAY[event_store.event('Debited', '{"amount": 30}'),
                             event_store.event('FeeCharged', '{"amount": 1}')])::event_store.stream_append]);
-- rows come back in input order; both streams moved
SELECT stream_id, stream_version, event_type FROM event_store.events
 WHERE stream_id LIKE 'account-%' ORDER BY stream_id, stream_version;

-- a conflict on one stream: ES001 naming it, nothing written to any
SELECT count(*) AS n FROM event_store.events \gset
SELECT pg_temp.try($$SELECT count(*) FROM event_store.append_all(ARRAY[
    ROW('account-1', 3, ARRAY[event_store.event('Debited', '{"amount": 5}')])::event_store.stream_append,
    ROW('account-2', 1, ARRAY[event_store.event('Credited', '{"amount": 5}')])::event_store.stream_append])$$);
SELECT pg_temp.try($$SELECT count(*) FROM event_store.append_all(ARRAY[
    ROW('account-1', 3, ARRAY[event_store.event('Debited', '{"amount": 5}')])::event_store.stream_append,
    ROW('account-3', -1, ARRAY[event_store.event('Credited', '{"amount": 5}')])::event_store.stream_append])$$);
SELECT count(*) = :n AS nothing_written FROM event_store.events;
SELECT stream_id, version FROM event_store.streams WHERE stream_id LIKE 'account-%' ORDER BY 1;

-- expected_version semantics are append's: NULL, 0, -1, N
SELECT * FROM event_store.append_all(ARRAY[
    ROW('account-1', NULL, ARRAY[event_store.event('Noted', '{}')])::event_store.stream_append,
    ROW('account-2', -1, ARRAY[event_store.event('Noted', '{}')])::event_store.stream_append,
    ROW('account-3', 0, ARRAY[event_store.event('Opened', '{}')])::event_store.stream_append]);

-- idempotent retries work per stream, as in append
SELECT * FROM event_store.append_all(ARRAY[
    ROW('retry-1', 0, ARRAY[event_store.event('A', '{}', NULL, 'd0000000-0000-4000-8000-000000000001')])::event_store.stream_append,
    ROW('retry-2', 0, ARRAY[event_store.event('B', '{}', NULL, 'd0000000-0000-4000-8000-000000000002')])::event_store.stream_append]);
SELECT * FROM event_store.append_all(ARRAY[
    ROW('retry-1', 0, ARRAY[event_store.event('A', '{}', NULL, 'd0000000-0000-4000-8000-000000000001')])::event_store.stream_append,
    ROW('retry-2', 0, ARRAY[event_store.event('B', '{}', NULL, 'd0000000-0000-4000-8000-000000000002')])::event_store.stream_append]);
SELECT count(*) FROM event_store.events WHERE stream_id LIKE 'retry-%';

-- bad input: clear errors, nothing written
SELECT count(*) AS n FROM event_store.events \gset
SELECT pg_temp.try($$SELECT count(*) FROM event_store.append_all(NULL)$$);
SELECT pg_temp.try($$SELECT count(*) FROM event_store.append_all(ARRAY[]::event_store.stream_append[])$$);
SELECT pg_temp.try($$SELECT count(*) FROM event_store.append_all(ARRAY[NULL::event_store.stream_append])$$);
SELECT pg_temp.try($$SELECT count(*) FROM event_store.append_all(ARRAY[
    ROW('bad-all-1', NULL, ARRAY[event_store.event('A', '{}')])::event_store.stream_append,
    ROW(NULL, NULL, ARRAY[event_store.event('A', '{}')])::event_store.stream_append])$$);
SELECT pg_temp.try($$SELECT count(*) FROM event_store.append_all(ARRAY[
    ROW('bad-all-1', NULL, NULL)::event_store.stream_append])$$);
SELECT pg_temp.try($$SELECT count(*) FROM event_store.append_all(ARRAY[
    ROW('bad-all-1', NULL, ARRAY[]::event_store.new_event[])::event_store.stream_append])$$);
SELECT pg_temp.try($$SELECT count(*) FROM event_store.append_all(ARRAY[
    ROW('bad-all-1', -7, ARRAY[event_store.event('A', '{}')])::event_store.stream_append])$$);
SELECT pg_temp.try($$SELECT count(*) FROM event_store.append_all(ARRAY[
    ROW('bad-all-1', NULL, ARRAY[event_store.event('A', '{}')])::event_store.stream_append,
    ROW('bad-all-2', NULL, ARRAY[event_store.event('B', '[]')])::event_store.stream_append])$$);
-- the same stream twice
SELECT pg_temp.try($$SELECT count(*) FROM event_store.append_all(ARRAY[
    ROW('bad-all-1', NULL, ARRAY[event_store.event('A', '{}')])::event_store.stream_append,
    ROW('bad-all-2', NULL, ARRAY[event_store.event('B', '{}')])::event_store.stream_append,
    ROW('bad-all-1', NULL, ARRAY[event_store.event('C', '{}')])::event_store.stream_append])$$);
-- the batch limit counts the events of all streams together
SET event_store.max_batch_size = 3;
SELECT pg_temp.try($$SELECT count(*) FROM event_store.append_all(ARRAY[
    ROW('bad-all-1', NULL, ARRAY[event_store.event('A', '{}'), event_store.event('A', '{}')])::event_store.stream_append,
    ROW('bad-all-2', NULL, ARRAY[event_store.event('B', '{}'), event_store.event('B', '{}')])::event_store.stream_append])$$);
RESET event_store.max_batch_size;
-- tags NULL inside the array, empty tags
SELECT pg_temp.try($$SELECT event_store.append_event('bad-tag-1', 'E', '{}', tags => ARRAY['a', NULL])$$);
SELECT pg_temp.try($$SELECT event_store.append_event('bad-tag-1', 'E', '{}', tags => ARRAY[''])$$);
SELECT pg_temp.try($$SELECT event_store.append('bad-tag-1', ARRAY[event_store.event('E', '{}', tags => ARRAY[NULL::text])])$$);
SELECT pg_temp.try($$SELECT event_store.append_event('bad-tag-1', 'E', '{}', tags => ARRAY[repeat('t', 256)])$$);
SELECT count(*) = :n AS nothing_written FROM event_store.events;
SELECT count(*) AS bad_streams FROM event_store.streams WHERE stream_id LIKE 'bad-%';

------------------------------------------------------------------------------
-- append_if / read_by_tags: a course holds at most 2 students
------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.enrol(student text, course text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    taken int;
    capacity int;
    read_up_to bigint;
BEGIN
    -- read the course's events, decide, append on condition
    SELECT count(*) FILTER (WHERE event_type = 'StudentEnrolled'),
           max((data->>'capacity')::int), coalesce(max(condition_position), 0)
      INTO taken, capacity, read_up_to
      FROM event_store.read_by_tags(ARRAY['course:' || course]);
    IF taken >= capacity THEN
        RETURN student || ': course full';
    END IF;
    PERFORM event_store.append_if(
        ARRAY[event_store.event('StudentEnrolled', jsonb_build_object('student', student), NULL, NULL, NULL,
                                ARRAY['course:' || course, 'student:' || student])],
        'course-' || course, ARRAY['StudentEnrolled'], ARRAY['course:' || course], read_up_to);
    RETURN student || ': enrolled';
END
$$;
SELECT pg_temp.enrol('ada', 'math');
SELECT pg_temp.enrol('grace', 'math');
SELECT pg_temp.enrol('alan', 'math');

SELECT stream_version, event_type, data, tags, condition_position = max(global_position) OVER () AS condition_is_last
  FROM event_store.read_by_tags(ARRAY['course:math']);
-- several tags must all match; types narrow further
SELECT event_type, data FROM event_store.read_by_tags(ARRAY['course:math', 'student:ada']);
SELECT count(*) FROM event_store.read_by_tags(ARRAY['course:math'], ARRAY['CourseDefined']);
SELECT count(*) FROM event_store.read_by_tags(ARRAY['course:math'], after_position => 1000000000);
-- the student's view crosses streams
SELECT stream_id, event_type FROM event_store.read_by_tags(ARRAY['student:ada']) ORDER BY global_position;

-- A stale read: someone enrolled after our position.  ES005 names the first
-- conflicting position; nothing is written.
SELECT min(global_position) AS stale FROM event_store.events WHERE stream_id = 'course-math' \gset
SELECT count(*) AS n FROM event_store.events \gset
SELECT pg_temp.try(format($$SELECT event_store.append_if(ARRAY[event_store.event('StudentEnrolled', '{}', NULL, NULL, NULL, ARRAY['course:math'])],
       'course-math', ARRAY['StudentEnrolled'], ARRAY['course:math'], %s)$$, :stale));
SELECT count(*) = :n AS nothing_written FROM event_store.events;
-- other types after the position do not count when types are given ...
SELECT event_store.append_event('course-math', 'RoomChanged', '{"room": "B12"}', tags => ARRAY['course:math']);
SELECT max(condition_position) AS pos FROM event_store.read_by_tags(ARRAY['course:math'], ARRAY['StudentEnrolled']) \gset
SELECT event_store.append_if(ARRAY[event_store.event('WaitlistJoined', '{"student": "alan"}')],
       'course-math', ARRAY['StudentEnrolled'], ARRAY['course:math'], :pos) AS version;
-- ... but do with types NULL (any type)
SELECT pg_temp.try(format($$SELECT event_store.append_if(ARRAY[event_store.event('Noted', '{}')],
       'course-math', NULL, ARRAY['course:math'], %s)$$, :pos));

-- bad conditions: clear errors, nothing written
SELECT count(*) AS n FROM event_store.events \gset
SELECT pg_temp.try($$SELECT event_store.append_if(ARRAY[event_store.event('E', '{}')], 'course-x', NULL, NULL, 0)$$);
SELECT pg_temp.try($$SELECT event_store.append_if(ARRAY[event_store.event('E', '{}')], 'course-x', ARRAY['E'], ARRAY[]::text[], 0)$$);
SELECT pg_temp.try($$SELECT event_store.append_if(ARRAY[event_store.event('E', '{}')], 'course-x', ARRAY[]::text[], ARRAY['t'], 0)$$);
SELECT pg_temp.try($$SELECT event_store.append_if(ARRAY[event_store.event('E', '{}')], 'course-x', NULL, ARRAY['t', NULL], 0)$$);
SELECT pg_temp.try($$SELECT event_store.append_if(ARRAY[event_store.event('E', '{}')], 'course-x', ARRAY[NULL::text], ARRAY['t'], 0)$$);
SELECT pg_temp.try($$SELECT event_store.append_if(ARRAY[event_store.event('E', '{}')], 'course-x', NULL, ARRAY['t'], -1)$$);
SELECT pg_temp.try($$SELECT event_store.append_if(ARRAY[event_store.event('E', '{}')], 'course-x', NULL, ARRAY['t'], NULL)$$);
SELECT pg_temp.try($$SELECT event_store.append_if(NULL, 'course-x', NULL, ARRAY['t'], 0)$$);
SELECT pg_temp.try($$SELECT event_store.append_if(ARRAY[event_store.event('E', '{}')], NULL, NULL, ARRAY['t'], 0)$$);
SELECT pg_temp.try($$SELECT event_store.append_if(ARRAY[event_store.event('E', '[]')], 'course-x', NULL, ARRAY['t'], 0)$$);
SELECT count(*) = :n AS nothing_written FROM event_store.events;

-- Tag locks are transaction-level advisory locks (field4 = 17748 = 0x4554).
BEGIN;
SELECT event_store.append_event('locks-1', 'E', '{}', tags => ARRAY['x', 'y', 'x']);
SELECT count(*) AS tag_locks FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid = 17748 AND pid = pg_backend_pid() AND mode = 'ExclusiveLock';
COMMIT;
SELECT count(*) AS tag_locks_after_commit FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 17748;
