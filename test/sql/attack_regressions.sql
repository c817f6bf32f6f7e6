-- Issue 25 re-probe: attacks on 1.11 that the first round of fixes did not
-- cover, each refused with ES003 and nothing changed.  The same output
-- preloaded and not preloaded.  docs/security.md, "Re-probe".
SET client_min_messages = warning;

-- try(): run a command, report ok or SQLSTATE and message (names masked).
CREATE FUNCTION pg_temp.try(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'events_p[0-9_]+', 'events_pN', 'g');
END
$$;

SELECT event_store.append('atk-1', ARRAY[event_store.event('Opened', '{"name": "Ann", "n": 1}'),
                                         event_store.event('Moved', '{"city": "Oslo"}')]);
SELECT event_store.append('atk-2', ARRAY[event_store.event('Opened', '{"name": "Bob"}')]);

-- The state that must not change: the events, the streams, the guard
-- triggers (name, function, enabled) and the names and persistence of
-- event_store's relations.
CREATE FUNCTION pg_temp.state() RETURNS text LANGUAGE sql AS $$
SELECT md5(concat_ws('|',
    (SELECT string_agg(to_jsonb(e)::text, ',' ORDER BY global_position) FROM event_store.events e),
    (SELECT string_agg(to_jsonb(s)::text, ',' ORDER BY stream_id) FROM event_store.streams s),
    (SELECT string_agg(format('%s:%s:%s:%s', t.tgrelid::regclass, t.tgname, t.tgfoid::regproc, t.tgenabled), ','
                       ORDER BY t.tgrelid::regclass::text, t.tgname)
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
      WHERE c.relnamespace IN ('event_store'::regnamespace, 'event_store_archive'::regnamespace)
        AND NOT t.tgisinternal),
    (SELECT string_agg(format('%s.%s:%s', n.nspname, c.relname, c.relpersistence), ',' ORDER BY n.nspname, c.relname)
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname IN ('event_store', 'event_store_archive'))))
$$;
SELECT pg_temp.state() AS before \gset

-- 1. Forging history under redact().  redact() may update events; the
-- table's owner (or a superuser) adds a BEFORE UPDATE trigger that fires
-- after the guard's row trigger (names fire in order) and changes what the
-- redaction writes: other columns, other data than the marker, extra keys.
-- The access method now checks every update made during redact() itself.
CREATE FUNCTION pg_temp.forge_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.stream_version := NEW.stream_version + 100; RETURN NEW; END $$;
CREATE FUNCTION pg_temp.forge_data() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.data := '{"forged": true}'; RETURN NEW; END $$;
CREATE FUNCTION pg_temp.forge_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.data := NEW.data || '{"extra": 1}'; RETURN NEW; END $$;
CREATE FUNCTION pg_temp.forge_field() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.data := jsonb_set(NEW.data, '{n}', '2'); RETURN NEW; END $$;
CREATE FUNCTION pg_temp.forge_type() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.event_type := 'Forged'; RETURN NEW; END $$;

SELECT f AS trigger_function,
       pg_temp.try(format('CREATE TRIGGER zzz_forge BEFORE UPDATE ON event_store.events '
                          'FOR EACH ROW EXECUTE FUNCTION pg_temp.%s()', f)) AS created,
       pg_temp.try($$SELECT event_store.redact('atk-1', 'test', ARRAY['name', 'n'])$$) AS redact_fields,
       pg_temp.try($$SELECT event_store.redact('atk-1', 'test')$$) AS redact_all,
       pg_temp.try('DROP TRIGGER zzz_forge ON event_store.events') AS dropped
  FROM unnest(ARRAY['forge_version', 'forge_data', 'forge_key', 'forge_field', 'forge_type']) f;
SELECT pg_temp.state() = :'before' AS unchanged_after_forged_redactions;

-- Without such a trigger redact() works, by field and whole.
BEGIN;
SELECT event_store.redact('atk-1', 'test', ARRAY['name']);
SELECT stream_version, data FROM event_store.events WHERE stream_id = 'atk-1' ORDER BY stream_version;
SELECT event_store.redact('atk-1', 'test');
SELECT stream_version, data FROM event_store.events WHERE stream_id = 'atk-1' ORDER BY stream_version;
ROLLBACK;

-- 2. The guard triggers by other routes than DISABLE: renamed (then
-- disabled under the new name), dropped, or replaced with CREATE OR
-- REPLACE TRIGGER and a function of the owner's.
CREATE FUNCTION pg_temp.noop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF TG_LEVEL = 'ROW' THEN RETURN NEW; END IF; RETURN NULL; END $$;
SELECT t.rel, t.trig, r.route,
       pg_temp.try(format(r.cmd, t.trig, t.rel, CASE WHEN t.trig LIKE '%truncate' THEN 'TRUNCATE' ELSE 'INSERT OR UPDATE OR DELETE' END,
                          CASE WHEN t.trig = 'events_append_only' THEN 'ROW' ELSE 'STATEMENT' END)) AS result
  FROM (VALUES ('event_store.events', 'events_append_only'),
               ('event_store.events', 'events_no_truncate'),
               ('event_store.events', '_direct_write_guard'),
               ('event_store_archive.events', 'events_append_only'),
               ('event_store.streams', '_direct_write_guard'),
               ('event_store.streams', '_direct_write_guard_truncate')) t(rel, trig),
       (VALUES ('rename', 'ALTER TRIGGER %1$s ON %2$s RENAME TO harmless'),
               ('drop', 'DROP TRIGGER %1$s ON %2$s'),
               ('replace', 'CREATE OR REPLACE TRIGGER %1$s BEFORE %3$s ON %2$s FOR EACH %4$s EXECUTE FUNCTION pg_temp.noop()')) r(route, cmd)
 ORDER BY 1, 2, 3;
SELECT pg_temp.state() = :'before' AS unchanged_after_trigger_routes;

-- 3. event_store.streams and the position sequence: the guards know them by
-- schema and name.  Renamed or moved, streams could be updated (versions
-- rewound) and the sequence restarted (positions repeated); unlogged, crash
-- recovery would empty them; streams' columns rewritten by ALTER TABLE.
CREATE SCHEMA atk_elsewhere;
SELECT cmd, pg_temp.try(cmd) AS result
  FROM unnest(ARRAY[
    'ALTER TABLE event_store.streams RENAME TO streams_old',
    'ALTER TABLE event_store.streams SET SCHEMA atk_elsewhere',
    'ALTER TABLE event_store.streams SET UNLOGGED',
    'ALTER TABLE event_store.streams RENAME COLUMN version TO v',
    'ALTER TABLE event_store.streams ALTER COLUMN last_position TYPE int',
    'ALTER TABLE event_store.streams ALTER COLUMN version TYPE bigint USING 0',
    'ALTER TABLE event_store.streams ALTER COLUMN version DROP NOT NULL',
    'ALTER TABLE event_store.streams DROP COLUMN last_position',
    'ALTER SEQUENCE event_store.global_position_seq RENAME TO gps_old',
    'ALTER TABLE event_store.global_position_seq RENAME TO gps_old',
    'ALTER SEQUENCE event_store.global_position_seq SET SCHEMA atk_elsewhere',
    'ALTER SEQUENCE event_store.global_position_seq SET UNLOGGED',
    'ALTER TABLE event_store.events SET SCHEMA atk_elsewhere',
    'ALTER TABLE event_store_archive.events SET SCHEMA atk_elsewhere',
    'ALTER TABLE event_store.settings RENAME TO settings_old',
    'ALTER TABLE event_store.subscription_checkpoints SET UNLOGGED',
    'ALTER SCHEMA event_store RENAME TO es_renamed',
    'ALTER SCHEMA event_store_archive RENAME TO esa_renamed']) cmd;
SELECT pg_temp.state() = :'before' AS unchanged_after_name_routes;
DROP SCHEMA atk_elsewhere;

-- Still allowed: what changes nothing stored or guarded.
SELECT cmd, pg_temp.try(cmd) AS result
  FROM unnest(ARRAY[
    'ALTER TABLE event_store.streams SET (fillfactor = 90)',
    'ALTER TABLE event_store.streams RESET (fillfactor)',
    'ALTER TABLE event_store.streams SET LOGGED',
    'ALTER TABLE event_store.streams ADD COLUMN atk_note text DEFAULT ''x''',
    'ALTER TABLE event_store.streams ALTER COLUMN atk_note TYPE varchar',
    'ALTER TABLE event_store.streams RENAME COLUMN atk_note TO atk_note2',
    'ALTER TABLE event_store.streams DROP COLUMN atk_note2',
    'ALTER SEQUENCE event_store.global_position_seq SET LOGGED']) cmd;

-- 4. Row-level security on the log hides stored events from the append's
-- check for ids it already holds: a retry appended its event again.  The
-- owner enables it (plain ENABLE applies to writers); appends now refuse
-- it (0A000), as folds do, and nothing is written.
CREATE ROLE atk_writer IN ROLE event_store_writer;
CREATE ROLE atk_admin IN ROLE event_store_admin;
ALTER TABLE event_store.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY atk_hide ON event_store.events USING (false) WITH CHECK (true);
SET ROLE atk_writer;
SELECT cmd, pg_temp.try(cmd) AS result
  FROM unnest(ARRAY[
    $$SELECT event_store.append_event('atk-3', 'E', '{}', event_id => '00000000-0000-4000-8000-0000000000a1')$$,
    $$SELECT event_store.append('atk-3', ARRAY[event_store.event('E', '{}')])$$,
    $$SELECT event_store.append_all(ARRAY[ROW('atk-3', NULL, ARRAY[event_store.event('E', '{}')])::event_store.stream_append])$$]) cmd;
RESET ROLE;
DROP POLICY atk_hide ON event_store.events;
ALTER TABLE event_store.events DISABLE ROW LEVEL SECURITY;
SELECT pg_temp.state() = :'before' AS unchanged_under_row_security;

-- 5. event_store.retention written directly by an admin: the tablespace
-- check of set_retention() applies to every write.
SET ROLE atk_admin;
SELECT pg_temp.try($$SELECT event_store.set_retention('1 year', 'archive', 'pg_global')$$) AS set_retention_other_tablespace;
SELECT event_store.set_retention('1 year', 'archive');
SELECT pg_temp.try($$INSERT INTO event_store.retention (keep, mode, tablespace) VALUES ('1 year', 'archive', 'pg_global')
                     ON CONFLICT (singleton) DO UPDATE SET tablespace = excluded.tablespace$$) AS insert_other_tablespace;
SELECT pg_temp.try($$UPDATE event_store.retention SET tablespace = 'pg_global'$$) AS update_other_tablespace;
SELECT pg_temp.try($$UPDATE event_store.retention SET tablespace = 'no_such_space'$$) AS update_missing_tablespace;
SELECT keep, mode, tablespace FROM event_store.retention;
SELECT event_store.set_retention(NULL, 'none');
RESET ROLE;
DROP ROLE atk_writer, atk_admin;

-- 6. Message DB's role cannot lock the log's tables beyond ROW EXCLUSIVE
-- (docs/security.md, "Writers, readers, admins").
CREATE EXTENSION IF NOT EXISTS event_store_messagedb;
SET ROLE message_store;
SELECT pg_temp.try('LOCK TABLE event_store.streams IN ACCESS EXCLUSIVE MODE') AS message_store_lock_streams,
       pg_temp.try('LOCK TABLE event_store.events IN SHARE MODE') AS message_store_lock_events;
RESET ROLE;

-- Appends still work and continue the versions.
SELECT event_store.append('atk-1', ARRAY[event_store.event('Closed', '{}')], 2);
SELECT stream_id, version FROM event_store.streams WHERE stream_id LIKE 'atk-%' ORDER BY 1;
RESET client_min_messages;
