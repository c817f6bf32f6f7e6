-- Property tests (1.5): the C built-in reducers against reference
-- implementations in PL/pgSQL, over 10,000 random documents and patches
-- (deterministic: setseed).  Every query below must report 0 mismatches.
SET client_min_messages = warning;
CREATE SCHEMA prop;
SET search_path = prop, public;

-- RFC 7386, section 2, as written.  A NULL patch leaves the target (the C
-- function's documented extension); a NULL target is a non-object.
CREATE FUNCTION prop.ref_merge_patch(target jsonb, patch jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    result jsonb;
    k text;
    v jsonb;
BEGIN
    IF patch IS NULL THEN
        RETURN target;
    END IF;
    IF jsonb_typeof(patch) <> 'object' THEN
        RETURN patch;
    END IF;
    IF target IS NULL OR jsonb_typeof(target) <> 'object' THEN
        result := '{}';
    ELSE
        result := target;
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(patch) LOOP
        IF jsonb_typeof(v) = 'null' THEN
            result := result - k;
        ELSE
            result := result || jsonb_build_object(k, prop.ref_merge_patch(result -> k, v));
        END IF;
    END LOOP;
    RETURN result;
END
$$;

-- A random JSON value: objects over a small key set (so patches overlap
-- their targets), arrays, strings (with quotes, unicode), numbers, booleans
-- and nulls; depth at most d.
CREATE FUNCTION prop.rand_json(d int, allow_null boolean DEFAULT true) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r float8 := random();
    keys constant text[] := ARRAY['a', 'b', 'c', 'd', 'e', 'a b', 'ü', '"q"', ''];
    o jsonb := '{}';
    n int;
BEGIN
    IF d > 0 AND r < 0.45 THEN
        n := floor(random() * 4)::int;
        FOR i IN 1 .. n LOOP
            o := o || jsonb_build_object(keys[1 + floor(random() * array_length(keys, 1))::int],
                                         prop.rand_json(d - 1));
        END LOOP;
        RETURN o;
    ELSIF d > 0 AND r < 0.55 THEN
        RETURN (SELECT coalesce(jsonb_agg(prop.rand_json(d - 1)), '[]')
                  FROM generate_series(1, floor(random() * 3)::int));
    ELSIF r < 0.70 AND allow_null THEN
        RETURN 'null';
    ELSIF r < 0.80 THEN
        RETURN to_jsonb(round((random() * 2000 - 1000)::numeric, (random() * 3)::int));
    ELSIF r < 0.90 THEN
        RETURN to_jsonb((ARRAY['x', 'y z', '', 'é', 'it''s', '"'])[1 + floor(random() * 6)::int]);
    ELSE
        RETURN to_jsonb(random() < 0.5);
    END IF;
END
$$;

SELECT setseed(0.42);
CREATE TABLE prop.cases AS
SELECT i,
       CASE WHEN i % 50 = 0 THEN NULL ELSE prop.rand_json(3) END AS target,
       CASE WHEN i % 97 = 0 THEN NULL
            WHEN i % 10 = 0 THEN prop.rand_json(1)          -- often a non-object patch
            ELSE prop.rand_json(3) END AS patch
  FROM generate_series(1, 10000) i;

SELECT count(*) AS cases,
       count(*) FILTER (WHERE jsonb_typeof(patch) = 'object') AS object_patches,
       count(*) FILTER (WHERE jsonb_typeof(target) = 'object') AS object_targets,
       count(*) FILTER (WHERE patch::text LIKE '%null%') AS patches_with_null
  FROM prop.cases;

-- jsonb_merge_patch(target, patch) = RFC 7386.
SELECT count(*) FILTER (WHERE event_store.jsonb_merge_patch(target, patch)
                              IS DISTINCT FROM prop.ref_merge_patch(target, patch)) AS merge_patch_mismatches
  FROM prop.cases;
-- Show the first mismatches, if any.
SELECT i, target, patch, event_store.jsonb_merge_patch(target, patch) AS c, prop.ref_merge_patch(target, patch) AS ref
  FROM prop.cases
 WHERE event_store.jsonb_merge_patch(target, patch) IS DISTINCT FROM prop.ref_merge_patch(target, patch)
 ORDER BY i LIMIT 3;

-- Idempotence of a patch (RFC 7386 patches are idempotent).
SELECT count(*) FILTER (WHERE event_store.jsonb_merge_patch(event_store.jsonb_merge_patch(target, patch), patch)
                              IS DISTINCT FROM event_store.jsonb_merge_patch(target, patch)) AS not_idempotent
  FROM prop.cases;

-- Events for the reducers: the patch as data (reducers see objects only:
-- append refuses other data), a type from a small set.
CREATE FUNCTION prop.ev(i int, data jsonb) RETURNS event_store.events LANGUAGE sql AS $$
    SELECT ROW(i, 'prop-1', i, (ARRAY['A', 'B', 'C', 'it''s', 'ü'])[1 + i % 5], data, NULL,
               '00000000-0000-4000-8000-000000000000'::uuid, '2026-01-01'::timestamptz,
               '2026-01-01'::timestamptz, '1'::xid8, NULL, 1)::event_store.events
$$;

-- merge_patch(state, event) = RFC 7386 of state with the event's data (a
-- NULL state is {}).
SELECT count(*) FILTER (WHERE event_store.merge_patch(target, prop.ev(i, p))
                              IS DISTINCT FROM prop.ref_merge_patch(coalesce(target, '{}'), p)) AS reducer_mismatches
  FROM prop.cases, LATERAL (SELECT CASE WHEN jsonb_typeof(patch) = 'object' THEN patch ELSE '{}' END AS p) x;

-- Folding: the reducers chained over 100 streams of 100 events each, against
-- the reference chained the same way, and the aggregate.
CREATE FUNCTION prop.chains() RETURNS TABLE (stream int, c_merge jsonb, ref_merge jsonb, agg_merge jsonb,
                                              c_last jsonb, ref_last jsonb, c_count jsonb, ref_count jsonb,
                                              c_n bigint, ref_n bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    e event_store.events;
BEGIN
    FOR s IN 0 .. 99 LOOP
        stream := s;
        c_merge := NULL; ref_merge := '{}'; c_last := NULL; ref_last := '{}';
        c_count := NULL; ref_count := '{}'; c_n := NULL; ref_n := 0;
        FOR r IN SELECT i, CASE WHEN jsonb_typeof(patch) = 'object' THEN patch ELSE '{}' END AS p
                   FROM prop.cases WHERE i % 100 = s ORDER BY i LOOP
            e := prop.ev(r.i, r.p);
            c_merge := event_store.merge_patch(c_merge, e);
            ref_merge := prop.ref_merge_patch(ref_merge, r.p);
            c_last := event_store.last_by_type(c_last, e);
            ref_last := ref_last || jsonb_build_object(e.event_type, e.data);
            c_count := event_store.count_by_type(c_count, e);
            ref_count := ref_count || jsonb_build_object(e.event_type, coalesce((ref_count ->> e.event_type)::int, 0) + 1);
            c_n := event_store.event_count(c_n, e);
            ref_n := ref_n + 1;
        END LOOP;
        SELECT event_store.merge_patch_agg(CASE WHEN jsonb_typeof(patch) = 'object' THEN patch ELSE '{}' END ORDER BY i)
          INTO agg_merge FROM prop.cases WHERE i % 100 = s;
        RETURN NEXT;
    END LOOP;
END
$$;
SELECT count(*) AS streams,
       count(*) FILTER (WHERE c_merge IS DISTINCT FROM ref_merge) AS merge_patch_fold_mismatches,
       count(*) FILTER (WHERE agg_merge IS DISTINCT FROM ref_merge) AS merge_patch_agg_mismatches,
       count(*) FILTER (WHERE c_last IS DISTINCT FROM ref_last) AS last_by_type_mismatches,
       count(*) FILTER (WHERE c_count IS DISTINCT FROM ref_count) AS count_by_type_mismatches,
       count(*) FILTER (WHERE c_n IS DISTINCT FROM ref_n) AS event_count_mismatches
  FROM prop.chains();

-- The documented NULL behaviour of each reducer.
SELECT event_store.merge_patch(NULL, NULL) AS mp_null_null,
       event_store.last_by_type('{"x": 1}', NULL) AS lbt_null_event,
       event_store.count_by_type(NULL, prop.ev(1, '{}')) AS cbt_null_state,
       event_store.event_count(NULL, prop.ev(1, '{}')) AS ec_null_state,
       event_store.event_count(9223372036854775806, prop.ev(1, '{}')) AS ec_max;
SELECT event_store.event_count(9223372036854775807, prop.ev(1, '{}'));

RESET search_path;
DROP SCHEMA prop CASCADE;
