# Gap-free feed under load, in both feed modes: 4 writers append and sleep a random while before
# committing (so positions commit out of order), while a reader pages
# through event_store.read_all() from its last position.  Over 20,000
# events the reader must receive every committed event exactly once, in
# position order: 0 skipped, 0 duplicated.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $writers = 4;
my $per_writer = 5000;
my $total = $writers * $per_writer;

# registry: preloaded; locks: not preloaded (1.8)
for my $mode ('registry', 'locks')
{
    my $node = PostgreSQL::Test::Cluster->new("feed_$mode");
    $node->init;
    $node->append_conf('postgresql.conf', ($mode eq 'registry' ? "shared_preload_libraries = 'event_store'\n" : '') . "max_connections = 20\n");
    $node->start;
    $node->safe_psql('postgres', 'CREATE EXTENSION event_store');
    is($node->safe_psql('postgres', 'SELECT event_store.feed_mode()'), $mode, "feed runs in $mode mode");
    $node->safe_psql('postgres', 'CREATE TABLE delivered (n serial, global_position bigint)');

    my $tmp = PostgreSQL::Test::Utils::tempdir;
    my @handles;
    for my $w (1 .. $writers)
    {
        my $file = "$tmp/writer_$w.sql";
        open my $fh, '>', $file or die;
        for my $i (1 .. $per_writer)
        {
            # half single events, some batches of 3 counted as 3
            if ($i % 10 == 0)
            {
                print $fh "BEGIN; SELECT event_store.append('stress-$w-" . ($i % 7)
                  . "', ARRAY[event_store.event('B', '{}'), event_store.event('B', '{}'), event_store.event('B', '{}')]);"
                  . " SELECT pg_sleep(random() * 0.003); COMMIT;\n";
            }
            else
            {
                print $fh "BEGIN; SELECT event_store.append_event('stress-$w-" . ($i % 7)
                  . "', 'E', '{}'); SELECT pg_sleep(random() * 0.003); COMMIT;\n";
            }
        }
        close $fh;
        push @handles, IPC::Run::start(
            [ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $file, '-d', $node->connstr('postgres') ],
            '<', '/dev/null', '>', "$tmp/writer_$w.out", '2>', "$tmp/writer_$w.err");
    }
    my $expected_events = $writers * ($per_writer + 2 * int($per_writer / 10));

    # The reader: pages by position until it has everything (or 5 minutes pass).
    my $reader = IPC::Run::start(
        [ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', qq{
            DO \$\$
            DECLARE
                last_position bigint := 0;
                got bigint := 0;
                r record;
                deadline timestamptz := clock_timestamp() + interval '5 minutes';
            BEGIN
                WHILE got < $expected_events AND clock_timestamp() < deadline LOOP
                    FOR r IN SELECT global_position FROM event_store.read_all(last_position, 500) LOOP
                        INSERT INTO delivered (global_position) VALUES (r.global_position);
                        last_position := r.global_position;
                        got := got + 1;
                    END LOOP;
                    PERFORM pg_sleep(0.001);
                END LOOP;
            END
            \$\$;
        } ],
        '<', '/dev/null', '>', "$tmp/reader.out", '2>', "$tmp/reader.err");

    my $ok = 1;
    for my $h (@handles) { $h->finish or $ok = 0; }
    ok($ok, "$mode: all writers finished without errors");
    $reader->finish;
    is(slurp_file("$tmp/reader.err"), '', "$mode: reader finished without errors");

    my $committed = $node->safe_psql('postgres', q{SELECT count(*) FROM event_store.events});
    is($committed, $expected_events, "$mode: $expected_events events committed");
    is($node->safe_psql('postgres', q{SELECT count(*) FROM delivered}), $committed, "$mode: reader received as many as committed");
    is($node->safe_psql('postgres', q{
        SELECT count(*) FROM event_store.events e WHERE NOT EXISTS (SELECT 1 FROM delivered d WHERE d.global_position = e.global_position)}),
       '0', "$mode: 0 skipped");
    is($node->safe_psql('postgres', q{
        SELECT count(*) FROM (SELECT global_position FROM delivered GROUP BY 1 HAVING count(*) > 1) s}),
       '0', "$mode: 0 duplicated");
    is($node->safe_psql('postgres', q{
        SELECT count(*) FROM (SELECT global_position, lag(global_position) OVER (ORDER BY n) AS prev FROM delivered) s
         WHERE prev >= global_position}),
       '0', "$mode: delivered in position order");
    is($node->safe_psql('postgres', q{SELECT count(*) > 0 FROM event_store.feed_status WHERE appends_in_flight = 0}),
       't', "$mode: nothing left in flight");

    $node->stop;

}

done_testing();
