SET timezone = 'UTC';
-- In a database of its own: the log is append-only, so the events of this
-- test would otherwise stay in the shared one for the tests that follow.
\set own_db es_merge_patch_test
\i test/sql/include/own_db.sql
SET timezone = 'UTC';
-- JSON merge patch (RFC 7386): jsonb_merge_patch, the merge_patch reducer
-- and the merge_patch_agg aggregate.

-- Every example of RFC 7386 Appendix A.
SELECT n, target, patch, event_store.jsonb_merge_patch(target, patch) AS result,
       event_store.jsonb_merge_patch(target, patch) = expected AS ok
  FROM (VALUES
    (1,  '{"a":"b"}'::jsonb,           '{"a":"c"}'::jsonb,                  '{"a":"c"}'::jsonb),
    (2,  '{"a":"b"}',                  '{"b":"c"}',                         '{"a":"b","b":"c"}'),
    (3,  '{"a":"b"}',                  '{"a":null}',                        '{}'),
    (4,  '{"a":"b","b":"c"}',          '{"a":null}',                        '{"b":"c"}'),
    (5,  '{"a":["b"]}',                '{"a":"c"}',                         '{"a":"c"}'),
    (6,  '{"a":"c"}',                  '{"a":["b"]}',                       '{"a":["b"]}'),
    (7,  '{"a":{"b":"c"}}',            '{"a":{"b":"d","c":null}}',          '{"a":{"b":"d"}}'),
    (8,  '{"a":[{"b":"c"}]}',          '{"a":[1]}',                         '{"a":[1]}'),
    (9,  '["a","b"]',                  '["c","d"]',                         '["c","d"]'),
    (10, '{"a":"b"}',                  '["c"]',                             '["c"]'),
    (11, '{"a":"foo"}',                'null',                              'null'),
    (12, '{"a":"foo"}',                '"bar"',                             '"bar"'),
    (13, '{"e":null}',                 '{"a":1}',                           '{"e":null,"a":1}'),
    (14, '[1,2]',                      '{"a":"b","c":null}',                '{"a":"b"}'),
    (15, '{}',                         '{"a":{"bb":{"ccc":null}}}',         '{"a":{"bb":{}}}')
  ) AS t(n, target, patch, expected)
 ORDER BY n;

-- More edge cases: deep nesting, keys of different lengths (jsonb orders
-- keys by length first), an object replacing a scalar and the reverse,
-- empty patches, NULL (SQL) arguments.
SELECT event_store.jsonb_merge_patch('{"a":{"b":{"c":{"d":1,"e":2}},"x":1},"long_key":0,"z":9}',
                                     '{"a":{"b":{"c":{"d":null,"f":3}},"y":[1,{"k":null}]},"m":{"n":null}}');
SELECT event_store.jsonb_merge_patch('{"a":1}', '{"a":{"b":1}}') AS scalar_becomes_object,
       event_store.jsonb_merge_patch('{"a":{"b":1}}', '{"a":2}') AS object_becomes_scalar;
SELECT event_store.jsonb_merge_patch('{"a":1}', '{}') AS empty_patch,
       event_store.jsonb_merge_patch('"s"', '{}') AS empty_patch_on_scalar,
       event_store.jsonb_merge_patch('{}', '{"a":null}') AS remove_missing;
SELECT event_store.jsonb_merge_patch(NULL, '{"a":1,"b":null}') AS null_target,
       event_store.jsonb_merge_patch('{"a":1}', NULL) AS null_patch,
       event_store.jsonb_merge_patch(NULL, NULL) IS NULL AS both_null;
SELECT event_store.jsonb_merge_patch('{"b":1,"aa":2,"a":3}', '{"ab":4,"a":null,"c":5,"aaa":6}') AS interleaved_keys;

-- The reducer takes the data of an event row; a NULL state is {}.
SELECT event_store.merge_patch('{"a":1,"b":2}', jsonb_populate_record(NULL::event_store.events, '{"event_type":"T","data":{"b":null,"c":3}}'));
SELECT event_store.merge_patch(NULL, jsonb_populate_record(NULL::event_store.events, '{"event_type":"T","data":{"b":null,"c":{"d":null}}}'));
-- Non-object data (not possible through append, which takes objects) replaces the state.
SELECT event_store.merge_patch('{"a":1}', jsonb_populate_record(NULL::event_store.events, '{"event_type":"T","data":[1,2]}')) AS array_data,
       event_store.merge_patch('{"a":1}', jsonb_populate_record(NULL::event_store.events, '{"event_type":"T","data":"s"}')) AS string_data;
SELECT event_store.merge_patch('{"a":1}', NULL) AS null_event;

-- The aggregate: any query can fold; ORDER BY gives the order.
CREATE TEMP TABLE patches (entity text, n int, patch jsonb);
INSERT INTO patches VALUES
  ('x', 1, '{"name":"A","tags":["t1"],"addr":{"city":"Berlin","zip":"10115"}}'),
  ('x', 2, '{"addr":{"zip":null,"street":"Unter den Linden"}}'),
  ('x', 3, '{"tags":["t2","t3"],"name":null}'),
  ('y', 1, '[1,2,3]'),
  ('y', 2, '{"now":"an object"}');
SELECT entity, event_store.merge_patch_agg(patch ORDER BY n) FROM patches GROUP BY entity ORDER BY entity;
SELECT event_store.merge_patch_agg(patch ORDER BY n DESC) AS reversed FROM patches WHERE entity = 'x';
SELECT event_store.merge_patch_agg(patch) IS NULL AS no_rows FROM patches WHERE false;

-- Over the log: the same as state_as_of.
SELECT event_store.append_event('cart-1', 'Added', '{"items":{"apple":1}}');
SELECT event_store.append_event('cart-1', 'Added', '{"items":{"pear":2}}');
SELECT event_store.append_event('cart-1', 'Removed', '{"items":{"apple":null}}');
SELECT stream_id, event_store.merge_patch_agg(data ORDER BY stream_version) AS state,
       event_store.merge_patch_agg(data ORDER BY stream_version) = event_store.state_as_of(stream_id) AS same
  FROM event_store.events WHERE stream_id = 'cart-1' GROUP BY stream_id;

-- A user reducer as an aggregate: CREATE AGGREGATE over the event row.
CREATE FUNCTION cart_items(s int, e event_store.events) RETURNS int
LANGUAGE sql IMMUTABLE
RETURN s + CASE e.event_type WHEN 'Added' THEN 1 WHEN 'Removed' THEN -1 ELSE 0 END;
CREATE AGGREGATE cart_items_agg(event_store.events) (SFUNC = cart_items, STYPE = int, INITCOND = '0');
SELECT e.stream_id, cart_items_agg(e ORDER BY e.stream_version) AS items,
       event_store.fold('cart_items(int,event_store.events)', 0, e.stream_id) AS folded
  FROM event_store.events e WHERE e.stream_id = 'cart-1' GROUP BY e.stream_id;
-- The built-in reducers work as aggregates the same way.
CREATE AGGREGATE count_by_type_agg(event_store.events) (SFUNC = event_store.count_by_type, STYPE = jsonb);
SELECT count_by_type_agg(e ORDER BY e.global_position) FROM event_store.events e WHERE e.stream_id = 'cart-1';

\c :orig_db
DROP DATABASE es_merge_patch_test;
