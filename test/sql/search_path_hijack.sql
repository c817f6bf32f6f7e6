-- search_path hijacking (1.5): same-named functions and operators in a
-- schema ahead of pg_catalog on the caller's search_path change nothing
-- in the SECURITY DEFINER function (_create_partition_for), in the append
-- path (which runs as the caller but must not let the caller's code run
-- while its direct-write guard is open) or in the reads.
\set own_db es_hijack_test
\set own_db_extension 'event_store VERSION ''1.5'''
\i test/sql/include/own_db.sql
SET timezone = 'UTC';
\set VERBOSITY terse

CREATE ROLE es_h_writer IN ROLE event_store_writer;

-- The trap: every call of a planted object raises a WARNING (it would show
-- in this file's output), and each returns a wrong answer.
CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE FUNCTION evil.split_part(text, text, int) RETURNS text LANGUAGE plpgsql IMMUTABLE AS
$$ BEGIN RAISE WARNING 'planted % ran', 'split_part'; RETURN 'HIJACKED'; END $$;
CREATE FUNCTION evil.to_regclass(text) RETURNS regclass LANGUAGE plpgsql AS
$$ BEGIN RAISE WARNING 'planted % ran', 'to_regclass'; RETURN NULL; END $$;
CREATE FUNCTION evil.isfinite(timestamptz) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS
$$ BEGIN RAISE WARNING 'planted % ran', 'isfinite'; RETURN false; END $$;
CREATE FUNCTION evil.format(text, VARIADIC text[]) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN RAISE WARNING 'planted % ran', 'format'; RETURN 'SELECT 1'; END $$;
CREATE FUNCTION evil.to_char(timestamp, text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS
$$ BEGIN RAISE WARNING 'planted % ran', 'to_char'; RETURN 'HIJACKED'; END $$;
CREATE FUNCTION evil.count_me_text(text, text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS
$$ BEGIN RAISE WARNING 'planted % ran', 'text ='; RETURN true; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.count_me_text,
                        RESTRICT = eqsel, JOIN = eqjoinsel);
CREATE FUNCTION evil.count_me_int8(bigint, bigint) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS
$$ BEGIN RAISE WARNING 'planted % ran', 'bigint op'; RETURN true; END $$;
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.count_me_int8);
CREATE OPERATOR evil.> (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.count_me_int8,
                        RESTRICT = scalargtsel);
CREATE OPERATOR evil.< (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.count_me_int8,
                        RESTRICT = scalarltsel);
CREATE OPERATOR evil.>= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.count_me_int8);
CREATE OPERATOR evil.<= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.count_me_int8);
CREATE FUNCTION evil.plus(bigint, bigint) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS
$$ BEGIN RAISE WARNING 'planted % ran', 'bigint +'; RETURN 1000; END $$;
CREATE OPERATOR evil.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.plus);
CREATE OPERATOR evil.- (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.plus);
CREATE FUNCTION evil.ts_cmp(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS
$$ BEGIN RAISE WARNING 'planted % ran', 'timestamptz op'; RETURN true; END $$;
CREATE OPERATOR evil.>= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ts_cmp);
CREATE OPERATOR evil.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ts_cmp);
CREATE OPERATOR evil.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ts_cmp);
CREATE OPERATOR evil.> (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ts_cmp);
CREATE FUNCTION evil.contains(text[], text[]) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS
$$ BEGIN RAISE WARNING 'planted % ran', 'text[] @>'; RETURN true; END $$;
CREATE OPERATOR evil.@> (LEFTARG = text[], RIGHTARG = text[], FUNCTION = evil.contains);
CREATE FUNCTION evil.uuid_eq(uuid, uuid) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS
$$ BEGIN RAISE WARNING 'planted % ran', 'uuid ='; RETURN true; END $$;
CREATE OPERATOR evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = evil.uuid_eq);

-- The trap works: an unqualified call from the caller's own SQL is caught.
SET search_path = evil, pg_catalog, public;
SELECT split_part('a-b', '-', 1) AS caught, 'x' = 'y' AS caught_eq;
RESET search_path;

SELECT event_store.append_event('seat-1', 'Opened', '{"n": 0}', tags => '{seat:1}');
SELECT event_store.set_partition_interval('1 day');

-- Everything below runs with the planted objects first on the path.
SET ROLE es_h_writer;
SET search_path = evil, pg_catalog, public;
SELECT event_store.append_event('seat-1', 'Held', '{"n": 1}', expected_version => 1, tags => '{seat:1}');
SELECT event_store.append('seat-1', ARRAY[event_store.event('Held', '{"n": 2}'), event_store.event('Held', '{"n": 3}')], 2);
SELECT event_store.append('seat-1', ARRAY[event_store.event('Held', '{"n": 4}', event_id => '00000000-0000-4000-8000-000000000001')], 4);
-- an idempotent retry (the event id lookup), and a conflict
SELECT event_store.append('seat-1', ARRAY[event_store.event('Held', '{"n": 4}', event_id => '00000000-0000-4000-8000-000000000001')], 4);
SELECT event_store.append_event('seat-1', 'Held', '{}', expected_version => 1);
SELECT * FROM event_store.append_all(ARRAY[ROW('seat-2', 0, ARRAY[event_store.event('Opened', '{}')])::event_store.stream_append]);
SELECT event_store.append_if(ARRAY[event_store.event('Booked', '{}', tags => '{seat:1}')], 'seat-1', NULL, '{seat:1}', 0);
SELECT event_store.append_if(ARRAY[event_store.event('Booked', '{}', tags => '{seat:9}')], 'seat-9', NULL, '{seat:9}', 0);
-- the SECURITY DEFINER function, directly and through an append that needs
-- a new partition
SELECT event_store._create_partition_for('2031-05-04 10:00+00')::text AS new_partition;
SELECT event_store._create_partition_for('2031-05-04 11:00+00')::text AS same_partition;
-- reads
SELECT stream_version, event_type, data FROM event_store.read_stream('seat-1');
SELECT stream_version FROM event_store.read_stream_backward('seat-1', 3, 2);
SELECT event_store.stream_version('seat-1') AS version, event_store.stream_version('nope') AS none;
SELECT count(*) AS category_seat FROM event_store.read_category('seat');
SELECT count(*) AS all_events FROM event_store.read_all();
SELECT stream_id, event_type FROM event_store.read_by_tags('{seat:1}');
-- folds: their statements are qualified down to their operators too
SELECT event_store.state_as_of('seat-1');
SELECT event_store.fold('event_store.event_count(bigint,event_store.events)', 0::bigint, 'seat-1');
RESET search_path;
RESET ROLE;

-- No planted object ran in the append path, the reads or the SECURITY
-- DEFINER function (no WARNING above), and nothing was forged.
SELECT stream_id, category, version FROM event_store.streams ORDER BY 1;
SELECT stream_id, array_agg(stream_version ORDER BY stream_version) AS versions
  FROM event_store.events GROUP BY 1 ORDER BY 1;
SELECT p.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
  FROM event_store.partition_ranges() r JOIN pg_class c ON c.oid = r.partition
  JOIN pg_class p ON p.oid = c.oid
 WHERE r.range_start >= '2031-01-01';
-- The new partition's category index uses pg_catalog's split_part: printed
-- with evil's first on the path, the definition must name pg_catalog.
SET search_path = evil, pg_catalog;
SELECT pg_get_indexdef(c.oid) AS category_index
  FROM pg_class c WHERE c.relname LIKE 'events_p2031%category%';
RESET search_path;

-- The direct-write guard is still shut for the writer's own statements.
SET ROLE es_h_writer;
SELECT event_store.append_event('seat-3', 'Opened', '{}');
INSERT INTO event_store.streams VALUES ('forged', 'forged', 1, now(), now(), 1, 1);
RESET ROLE;

\c :orig_db
DROP DATABASE es_hijack_test;
DROP ROLE es_h_writer;
