# A backend (not the postmaster) killed in the middle of work:
#
#  (a) a batch append of event_store.max_batch_size events, held inside the
#      INSERT by an AFTER INSERT statement trigger that sleeps, killed with
#      pg_terminate_backend() and with SIGKILL of its pid (the postmaster
#      then resets every backend and recovers), for a new stream, an
#      existing stream and a multi-stream append_all(): no partial batch is
#      visible, the streams are absent or unchanged (event_store.streams
#      included), and appends continue at the right versions;
#  (b) projection rebuilds killed the same two ways while a handler sleeps:
#      rebuild_projection() of an inline projection (one transaction: the
#      read model and its checkpoint are exactly as before), and the
#      procedure rebuild_projection_in_batches() of an async projection
#      (batches commit: the checkpoint equals what the read-model table
#      holds).  Afterwards run_projection() catches up and a new rebuild
#      completes with the right result.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('backend_kill');
$node->init;
$node->append_conf('postgresql.conf',
    "shared_preload_libraries = 'event_store'\nrestart_after_crash = on\n"
    # the test runs its async projection itself (no live worker, issue 29)
    . "event_store.projection_workers = 0\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');

my $max_batch = $node->safe_psql('postgres', 'SHOW event_store.max_batch_size');
is($max_batch, '10000', 'event_store.max_batch_size is the documented 10000');

# Run $sql in a background psql; wait until a backend running it sleeps in
# pg_sleep() (the hold); kill it ($how: 'terminate' or 'sigkill'); wait
# until the server accepts connections again.  Returns psql's stderr.
sub hold_and_kill
{
    my ($sql, $marker, $how) = @_;
    my ($out, $err) = ('', '');
    my $h = IPC::Run::start(
        [ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', $sql ],
        '<', '/dev/null', '>', \$out, '2>', \$err);
    my $held = 0;
    for (1 .. 1200)
    {
        $h->pump_nb;
        die "'$marker' ended before its hold: $err" unless $h->pumpable;
        $held = $node->safe_psql('postgres',
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%$marker%' AND wait_event = 'PgSleep' AND pid <> pg_backend_pid()");
        last if $held;
        usleep(100_000);
    }
    die "'$marker' did not reach its hold" unless $held == 1;
    my $pid = $node->safe_psql('postgres',
        "SELECT pid FROM pg_stat_activity WHERE query LIKE '%$marker%' AND wait_event = 'PgSleep' AND pid <> pg_backend_pid()");
    if ($how eq 'terminate')
    {
        # with a timeout, pg_terminate_backend() returns once the backend has exited
        is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid, 60000)"),
           't', "$marker: backend $pid terminated");
    }
    else
    {
        my $offset = -s $node->logfile;
        is(kill('KILL', $pid), 1, "$marker: SIGKILL sent to backend $pid");
        # the postmaster kills every other backend, reinitializes and recovers
        $node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
        $node->wait_for_log(qr/database system is ready to accept connections/, $offset);
        $node->poll_query_until('postgres', 'SELECT true') or die 'server did not come back';
    }
    eval { $h->finish; 1 } or $h->kill_kill;
    return $err;
}

my $invariants = q{
    SELECT (SELECT count(*) FROM (SELECT stream_id FROM event_store.events GROUP BY stream_id
                                  HAVING count(*) <> max(stream_version) OR min(stream_version) <> 1
                                      OR count(DISTINCT stream_version) <> count(*)) s)
         + (SELECT count(*) FROM event_store.streams s
             FULL JOIN (SELECT stream_id, count(*) AS n, max(stream_version) AS v, min(global_position) AS f,
                               max(global_position) AS l FROM event_store.events GROUP BY stream_id) e USING (stream_id)
             WHERE s.version IS DISTINCT FROM e.v OR s.version IS DISTINCT FROM e.n
                OR s.first_position IS DISTINCT FROM e.f OR s.last_position IS DISTINCT FROM e.l)
         + (SELECT count(*) - count(DISTINCT global_position) FROM event_store.events)};

# ---------------------------------------------------------------------------
# (a) batch appends killed in the middle
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', q{
    CREATE TABLE hold_ctl (hold_batch bool NOT NULL, hold_handler_at bigint);
    INSERT INTO hold_ctl VALUES (false, NULL);
    CREATE FUNCTION hold_batch() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF (SELECT hold_batch FROM hold_ctl)
           AND EXISTS (SELECT 1 FROM new_rows WHERE stream_id LIKE 'big-%') THEN
            PERFORM pg_sleep(300);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER hold_batch AFTER INSERT ON event_store.events
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hold_batch();
    SELECT event_store.append('big-existing', ARRAY[event_store.event('Small', '{"i": 1}'),
                                                    event_store.event('Small', '{"i": 2}'),
                                                    event_store.event('Small', '{"i": 3}')], 0);
    SELECT event_store.append_event('other-1', 'Small', '{}');
});
my $streams_row = q{SELECT string_agg(format('%s|%s|%s|%s|%s|%s', stream_id, version, first_position, last_position,
                                             created_at, updated_at), ',' ORDER BY stream_id)
                      FROM event_store.streams};
my $events_digest = q{SELECT count(*) || '|' || coalesce(md5(string_agg(global_position || stream_id || stream_version || data::text, ',' ORDER BY global_position)), '')
                        FROM event_store.events};
my $streams_before = $node->safe_psql('postgres', $streams_row);
my $events_before = $node->safe_psql('postgres', $events_digest);
my $last_pos_before = $node->safe_psql('postgres', 'SELECT max(global_position) FROM event_store.events');

# a feed reader positioned at the end before the kills
my $feed_pos = $last_pos_before;

$node->safe_psql('postgres', 'UPDATE hold_ctl SET hold_batch = true');
my $batch = "(SELECT array_agg(event_store.event('Big', jsonb_build_object('i', i))) FROM generate_series(1, $max_batch) i)";
my $batch_less_1 = "(SELECT array_agg(event_store.event('Big', jsonb_build_object('i', i))) FROM generate_series(1, $max_batch - 1) i)";
my @cases = (
    [ 'big-new-term', 'terminate', "SELECT event_store.append('big-new-term', $batch, 0)" ],
    [ 'big-new-kill', 'sigkill', "SELECT event_store.append('big-new-kill', $batch, 0)" ],
    [ 'big-existing', 'terminate', "SELECT event_store.append('big-existing', $batch, 3) /* term */" ],
    [ 'big-existing', 'sigkill', "SELECT event_store.append('big-existing', $batch) /* kill */" ],
    # max_batch_size bounds the whole append_all: 9,999 + 1 events
    [ 'big-all', 'sigkill', "SELECT * FROM event_store.append_all(ARRAY[ROW('big-all-1', 0, $batch_less_1)::event_store.stream_append, ROW('big-existing', 3, ARRAY[event_store.event('X', '{}')])::event_store.stream_append]) /* big-all */" ],
);
for my $c (@cases)
{
    my ($stream, $how, $sql) = @$c;
    my $marker = $stream eq 'big-all' ? 'big-all' : $sql =~ m{/\* (\w+) \*/} ? $1 : $stream;
    my $label = "batch of $max_batch to $stream ($how)";
    my $err = hold_and_kill($sql, $marker, $how);
    like($err, qr/terminat|server closed the connection|connection to server was lost/,
         "$label: the client saw its connection end");
    is($node->safe_psql('postgres', $events_digest), $events_before, "$label: the log is exactly as before (no partial batch)");
    is($node->safe_psql('postgres', $streams_row), $streams_before, "$label: event_store.streams is exactly as before");
    is($node->safe_psql('postgres', $invariants), '0', "$label: versions contiguous, streams agree, positions unique");
}
is($node->safe_psql('postgres', q{SELECT count(*) FROM event_store.events WHERE stream_id IN ('big-new-term', 'big-new-kill', 'big-all-1')}),
   '0', 'killed batches: the new streams have no events');
is($node->safe_psql('postgres', q{SELECT event_store.stream_version('big-new-term') + event_store.stream_version('big-new-kill') + event_store.stream_version('big-all-1')}),
   '0', 'killed batches: the new streams do not exist');

# Appends continue at the right versions, the same full batches included.
$node->safe_psql('postgres', 'UPDATE hold_ctl SET hold_batch = false');
is($node->safe_psql('postgres', "SELECT event_store.append('big-new-term', $batch, 0)"),
   $max_batch, 'after the kills: the full batch appends to the new stream at versions 1..max');
is($node->safe_psql('postgres', "SELECT event_store.append('big-existing', $batch, 3)"),
   3 + $max_batch, 'after the kills: the existing stream continues at version 4');
is($node->safe_psql('postgres', "SELECT event_store.append_event('big-new-kill', 'E', '{}', expected_version => 0)"),
   '1', 'after the kills: a killed new stream starts at version 1');
is($node->safe_psql('postgres', q{SELECT string_agg(stream_id || ':' || version, ',' ORDER BY stream_id)
    FROM event_store.append_all(ARRAY[ROW('big-all-1', 0, ARRAY[event_store.event('A', '{}')])::event_store.stream_append,
                                      ROW('other-1', 1, ARRAY[event_store.event('A', '{}')])::event_store.stream_append])}),
   'big-all-1:1,other-1:2', 'after the kills: append_all continues at the right versions');
is($node->safe_psql('postgres', q{SELECT string_agg(stream_version::text, ',' ORDER BY stream_version)
                                    FROM event_store.read_stream('big-existing', 1, 5)}),
   '1,2,3,4,5', 'read_stream: the old events, then the new batch');
is($node->safe_psql('postgres', q{SELECT count(*) || '|' || min(stream_version) || '|' || max(stream_version) || '|' || sum((data->>'i')::int)
                                    FROM event_store.read_stream('big-existing', 4, 20000)}),
   "$max_batch|4|" . (3 + $max_batch) . '|' . ($max_batch * ($max_batch + 1) / 2),
   'read_stream: the new batch complete, in order');
is($node->safe_psql('postgres', $invariants), '0', 'after the kills: versions contiguous, streams agree, positions unique');

# The feed reader continues: everything after its position, once, in order.
is($node->safe_psql('postgres', qq{
    SELECT count(*) || '|' || count(DISTINCT global_position) || '|' || (bool_and(global_position > $feed_pos))::int
      FROM event_store.read_all($feed_pos, 1000000)}),
   (2 * $max_batch + 3) . '|' . (2 * $max_batch + 3) . '|1',
   'feed: a reader positioned before the kills gets exactly the later events, once');
$node->safe_psql('postgres', 'DROP TRIGGER hold_batch ON event_store.events');

# ---------------------------------------------------------------------------
# (b) projection rebuilds killed in the middle
# ---------------------------------------------------------------------------
# Two read models of the "acct" category: per stream the number of events,
# the sum of "amount" and the last position handled.  The handlers sleep at
# the event whose position hold_ctl.hold_handler_at names.
$node->safe_psql('postgres', q{
    CREATE TABLE rm_inline (stream_id text PRIMARY KEY, n bigint NOT NULL, total bigint NOT NULL, last_pos bigint NOT NULL);
    CREATE TABLE rm_async  (stream_id text PRIMARY KEY, n bigint NOT NULL, total bigint NOT NULL, last_pos bigint NOT NULL);
    CREATE FUNCTION hold_at(p bigint) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        IF p = (SELECT hold_handler_at FROM hold_ctl) THEN
            PERFORM pg_sleep(300);
        END IF;
    END $$;
    CREATE FUNCTION on_inline(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM hold_at(e.global_position);
        INSERT INTO rm_inline VALUES (e.stream_id, 1, (e.data->>'amount')::bigint, e.global_position)
        ON CONFLICT (stream_id) DO UPDATE
           SET n = rm_inline.n + 1, total = rm_inline.total + excluded.total, last_pos = excluded.last_pos;
    END $$;
    CREATE FUNCTION on_async(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM hold_at(e.global_position);
        INSERT INTO rm_async VALUES (e.stream_id, 1, (e.data->>'amount')::bigint, e.global_position)
        ON CONFLICT (stream_id) DO UPDATE
           SET n = rm_async.n + 1, total = rm_async.total + excluded.total, last_pos = excluded.last_pos;
    END $$;
    CREATE FUNCTION reset_inline() RETURNS void LANGUAGE sql AS 'TRUNCATE rm_inline';
    CREATE FUNCTION reset_async() RETURNS void LANGUAGE sql AS 'TRUNCATE rm_async';
    SELECT event_store.create_projection('p_inline', 'on_inline(event_store.events)', categories => '{acct}',
                                         mode => 'inline', reset => 'reset_inline()');
    SELECT event_store.create_projection('p_async', 'on_async(event_store.events)', categories => '{acct}',
                                         mode => 'async', reset => 'reset_async()');
});
# 40 streams x 100 events, appended in batches of 20 (the inline projection
# follows them), other categories interleaved.
$node->safe_psql('postgres', q{
    DO $$
    BEGIN
        FOR b IN 0 .. 4 LOOP
            FOR s IN 1 .. 40 LOOP
                PERFORM event_store.append('acct-' || s,
                    (SELECT array_agg(event_store.event('Deposited', jsonb_build_object('amount', s * 1000 + b * 20 + i)))
                       FROM generate_series(1, 20) i));
                PERFORM event_store.append_event('noise-' || s, 'N', '{}');
            END LOOP;
        END LOOP;
    END $$;
    SELECT event_store.run_projection('p_async', 100000);
});

# The read model recomputed from the log, up to a position.
sub expected_rm
{
    my ($upto) = @_;
    return $node->safe_psql('postgres', qq{
        SELECT coalesce(string_agg(format('%s|%s|%s|%s', stream_id, n, total, last_pos), ',' ORDER BY stream_id), '')
          FROM (SELECT stream_id, count(*) AS n, sum((data->>'amount')::bigint) AS total, max(global_position) AS last_pos
                  FROM event_store.events
                 WHERE event_store.category(stream_id) = 'acct' AND global_position <= $upto
                 GROUP BY stream_id) s});
}
sub actual_rm
{
    my ($table) = @_;
    return $node->safe_psql('postgres', qq{
        SELECT coalesce(string_agg(format('%s|%s|%s|%s', stream_id, n, total, last_pos), ',' ORDER BY stream_id), '')
          FROM $table});
}
my $all = '9223372036854775807';
my $n_acct = $node->safe_psql('postgres', q{SELECT count(*) FROM event_store.events WHERE stream_id LIKE 'acct-%'});
is($n_acct, '4000', 'projection data: 4000 acct events');
is(actual_rm('rm_inline'), expected_rm($all), 'inline read model follows the appends');
is(actual_rm('rm_async'), expected_rm($all), 'async read model caught up');

# the position of the 2,500th acct event: the handlers hold there
my $mid = $node->safe_psql('postgres', q{
    SELECT global_position FROM event_store.events WHERE stream_id LIKE 'acct-%'
     ORDER BY global_position OFFSET 2499 LIMIT 1});
$node->safe_psql('postgres', "UPDATE hold_ctl SET hold_handler_at = $mid");
my $ckpt = q{SELECT format('%s|%s|%s|%s|%s', position, events_processed, rebuild_started_at IS NOT NULL,
                           rebuild_target, rebuild_finished_at IS NOT NULL)
               FROM event_store.projection_checkpoints WHERE name = };

# (b1) rebuild_projection() of the inline projection: one transaction.
for my $how ('terminate', 'sigkill')
{
    my $rm_before = actual_rm('rm_inline');
    my $ck_before = $node->safe_psql('postgres', "$ckpt 'p_inline'");
    hold_and_kill("SELECT event_store.rebuild_projection('p_inline') /* rebuild_inline_$how */",
                  "rebuild_inline_$how", $how);
    is(actual_rm('rm_inline'), $rm_before, "inline rebuild killed ($how): the read model is exactly as before");
    is($node->safe_psql('postgres', "$ckpt 'p_inline'"), $ck_before,
       "inline rebuild killed ($how): the checkpoint row is exactly as before");
    is(actual_rm('rm_inline'), expected_rm($all), "inline rebuild killed ($how): the read model agrees with the log");
}
$node->safe_psql('postgres', 'UPDATE hold_ctl SET hold_handler_at = NULL');
# an append after the kills still reaches the inline projection
$node->safe_psql('postgres', q{SELECT event_store.append_event('acct-1', 'Deposited', '{"amount": 7}')});
is(actual_rm('rm_inline'), expected_rm($all), 'inline projection: appends after the kills are projected');
# make the read model wrong, then a rebuild repairs it
$node->safe_psql('postgres', q{UPDATE rm_inline SET total = 0 WHERE stream_id = 'acct-2'});
is($node->safe_psql('postgres', q{SELECT event_store.rebuild_projection('p_inline')}), '4001',
   'inline rebuild after the kills: every acct event replayed');
is(actual_rm('rm_inline'), expected_rm($all), 'inline rebuild after the kills: the read model agrees with the log');
is($node->safe_psql('postgres', q{SELECT format('%s|%s', events_processed, rebuild_finished_at IS NOT NULL)
                                    FROM event_store.projection_checkpoints WHERE name = 'p_inline'}),
   '4001|t', 'inline rebuild after the kills: the checkpoint records a finished rebuild of 4001 events');

# (b2) rebuild_projection_in_batches() of the async projection: batches of
# 500 commit; the kill comes in the fifth batch (it holds the 2,500th event).
$node->safe_psql('postgres', "UPDATE hold_ctl SET hold_handler_at = $mid");
$node->safe_psql('postgres', q{SELECT event_store.run_projection('p_async', 100000)});
for my $how ('terminate', 'sigkill')
{
    hold_and_kill("CALL event_store.rebuild_projection_in_batches('p_async', 500) /* rebuild_async_$how */",
                  "rebuild_async_$how", $how);
    my ($pos, $processed, $started, $finished) = split /\|/, $node->safe_psql('postgres',
        q{SELECT position, events_processed, rebuild_started_at IS NOT NULL, rebuild_finished_at IS NOT NULL
            FROM event_store.projection_checkpoints WHERE name = 'p_async'});
    is($started . $finished, 'tf', "async rebuild killed ($how): a rebuild started, not finished");
    is($processed, '2000', "async rebuild killed ($how): four committed batches of 500 before the held one");
    ok($pos > 0 && $pos < $mid, "async rebuild killed ($how): the checkpoint ($pos) is before the held event ($mid)");
    is(actual_rm('rm_async'), expected_rm($pos),
       "async rebuild killed ($how): the table holds exactly the events up to the checkpoint");
}
$node->safe_psql('postgres', 'UPDATE hold_ctl SET hold_handler_at = NULL');
# run_projection continues from the checkpoint
is($node->safe_psql('postgres', q{SELECT event_store.run_projection('p_async', 100000)}), '2001',
   'after the kills: run_projection handles the remaining 2001 events');
is(actual_rm('rm_async'), expected_rm($all), 'after the kills: the async read model agrees with the log');
# a new batched rebuild completes
$node->safe_psql('postgres', q{UPDATE rm_async SET n = 0});
$node->safe_psql('postgres', q{CALL event_store.rebuild_projection_in_batches('p_async', 500)});
is(actual_rm('rm_async'), expected_rm($all), 'batched rebuild after the kills: the read model agrees with the log');
is($node->safe_psql('postgres', q{SELECT format('%s|%s|%s', events_processed, rebuild_finished_at IS NOT NULL,
                                                position >= (SELECT max(last_pos) FROM rm_async))
                                    FROM event_store.projection_checkpoints WHERE name = 'p_async'}),
   '4001|t|t', 'batched rebuild after the kills: finished, 4001 events, checkpoint at the end');
is($node->safe_psql('postgres', $invariants), '0', 'at the end: versions contiguous, streams agree, positions unique');

$node->stop;
done_testing();
