# Gap-free feed at 16 writers (issue 26), in both feed modes.  16 writers
# append and sleep a random 0-5 ms before COMMIT, so that positions commit
# out of order; every 9th transaction rolls back (a hole in the positions)
# and every 5th appends twice (a first draw and a later one, with other
# writers' draws in between).  A reader follows the feed the way the docs
# tell consumers to: wait_for_feed(last, ...) and then read_all(last, ...).
# It must receive every committed event exactly once, in position order,
# and nothing that rolled back.  The run must really have committed
# positions out of order (commit timestamps) and left holes, or it proved
# nothing.
#
# Also: an append left open in another database does not hold this
# database's feed back (positions are per database).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $writers = 16;

for my $mode ('registry', 'locks')
{
    # the registry is the default and gets the longer run
    my $per_writer = $mode eq 'registry' ? 500 : 150;
    my $node = PostgreSQL::Test::Cluster->new("feed16_$mode");
    $node->init;
    $node->append_conf('postgresql.conf',
        ($mode eq 'registry' ? "shared_preload_libraries = 'event_store'\n" : '')
          . "max_connections = 40\ntrack_commit_timestamp = on\n");
    $node->start;
    $node->safe_psql('postgres', 'CREATE EXTENSION event_store');
    is($node->safe_psql('postgres', 'SELECT event_store.feed_mode()'), $mode, "feed runs in $mode mode");
    $node->safe_psql('postgres', 'CREATE TABLE delivered (n serial, global_position bigint)');

    my $tmp = PostgreSQL::Test::Utils::tempdir;
    my @handles;
    my $expected_events = 0;
    for my $w (1 .. $writers)
    {
        my $file = "$tmp/writer_$w.sql";
        open my $fh, '>', $file or die;
        for my $i (1 .. $per_writer)
        {
            my $stream = "s16-$w-" . ($i % 5);
            my $sql = "BEGIN; SELECT event_store.append_event('$stream', 'E', '{}');";
            my $n = 1;
            if ($i % 5 == 0)
            {
                $sql .= " SELECT pg_sleep(random() * 0.002); SELECT event_store.append_event('$stream', 'F', '{}');";
                $n = 2;
            }
            $sql .= " SELECT pg_sleep(random() * 0.005);";
            if ($i % 9 == 0)
            {
                $sql .= " ROLLBACK;\n";
                $n = 0;
            }
            else
            {
                $sql .= " COMMIT;\n";
            }
            print $fh $sql;
            $expected_events += $n;
        }
        close $fh;
        push @handles, IPC::Run::start(
            [ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $file, '-d', $node->connstr('postgres') ],
            '<', '/dev/null', '>', "$tmp/writer_$w.out", '2>', "$tmp/writer_$w.err");
    }

    # The reader: wait for the feed to pass its position, then page with
    # read_all; until it has everything (or 3 minutes pass).
    my $reader = IPC::Run::start(
        [ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', qq{
            DO \$\$
            DECLARE
                last_position bigint := 0;
                got bigint := 0;
                r record;
                deadline timestamptz := clock_timestamp() + interval '3 minutes';
            BEGIN
                WHILE got < $expected_events AND clock_timestamp() < deadline LOOP
                    PERFORM event_store.wait_for_feed(last_position, 200);
                    FOR r IN SELECT global_position FROM event_store.read_all(last_position, 200) LOOP
                        INSERT INTO delivered (global_position) VALUES (r.global_position);
                        last_position := r.global_position;
                        got := got + 1;
                    END LOOP;
                END LOOP;
            END
            \$\$;
        } ],
        '<', '/dev/null', '>', "$tmp/reader.out", '2>', "$tmp/reader.err");

    my $ok = 1;
    for my $h (@handles) { $h->finish or $ok = 0; }
    ok($ok, "$mode: all 16 writers finished without errors");
    $reader->finish;
    is(slurp_file("$tmp/reader.err"), '', "$mode: reader finished without errors");

    my $committed = $node->safe_psql('postgres', q{SELECT count(*) FROM event_store.events});
    is($committed, $expected_events, "$mode: $expected_events events committed");
    is($node->safe_psql('postgres', q{SELECT count(*) FROM delivered}), $committed,
        "$mode: reader received as many as committed");
    is($node->safe_psql('postgres', q{
        SELECT count(*) FROM event_store.events e
         WHERE NOT EXISTS (SELECT 1 FROM delivered d WHERE d.global_position = e.global_position)}),
       '0', "$mode: 0 skipped");
    is($node->safe_psql('postgres', q{
        SELECT count(*) FROM delivered d
         WHERE NOT EXISTS (SELECT 1 FROM event_store.events e WHERE e.global_position = d.global_position)}),
       '0', "$mode: nothing delivered that is not in the log (rolled back)");
    is($node->safe_psql('postgres', q{
        SELECT count(*) FROM (SELECT global_position FROM delivered GROUP BY 1 HAVING count(*) > 1) s}),
       '0', "$mode: 0 duplicated");
    is($node->safe_psql('postgres', q{
        SELECT count(*) FROM (SELECT global_position, lag(global_position) OVER (ORDER BY n) AS prev FROM delivered) s
         WHERE prev >= global_position}),
       '0', "$mode: delivered in position order");

    # what the run exercised: holes, and commits out of position order
    cmp_ok($node->safe_psql('postgres', q{
        SELECT max(global_position) - count(*) FROM event_store.events}),
       '>', 0, "$mode: rolled-back appends left holes in the positions");
    cmp_ok($node->safe_psql('postgres', q{
        SELECT count(*) FROM (
          SELECT pg_xact_commit_timestamp(e.xmin) AS at,
                 max(pg_xact_commit_timestamp(e.xmin)) OVER (ORDER BY e.global_position
                                                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS latest_before
            FROM event_store.events e) s
         WHERE at < latest_before}),
       '>', 0, "$mode: some positions committed after higher ones");
    is($node->safe_psql('postgres', q{SELECT appends_in_flight FROM event_store.feed_status}),
       '0', "$mode: nothing left in flight");

    # An append left open in another database does not hold this one's feed.
    $node->safe_psql('postgres', 'CREATE DATABASE other');
    $node->safe_psql('other', 'CREATE EXTENSION event_store');
    my $open = IPC::Run::start(
        [ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('other'), '-c',
          q{BEGIN; SELECT event_store.append_event('elsewhere-1', 'E', '{}'); SELECT pg_sleep(60); COMMIT;} ],
        '<', '/dev/null', '>', "$tmp/open.out", '2>', "$tmp/open.err");
    $node->poll_query_until('postgres',
        q{SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = 'other' AND query LIKE '%pg_sleep(60)%' AND wait_event = 'PgSleep'})
      or die "the open append in database other did not start";
    is($node->safe_psql('other', q{SELECT appends_in_flight FROM event_store.feed_status}),
       '1', "$mode: the other database has an append in flight");
    my $before = $node->safe_psql('postgres', 'SELECT event_store.feed_horizon()');
    $node->safe_psql('postgres', q{SELECT event_store.append_event('after-other', 'E', '{}')});
    my $pos = $node->safe_psql('postgres',
        q{SELECT global_position FROM event_store.events WHERE stream_id = 'after-other'});
    is($node->safe_psql('postgres', "SELECT event_store.wait_for_feed($before, 10000) >= $pos"),
       't', "$mode: the feed passes a new append while another database's append is open");
    $node->safe_psql('postgres', q{SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = 'other' AND query LIKE '%pg_sleep(60)%'});
    $open->finish;

    $node->stop;
}

done_testing();
