# Crash safety: kill the postmaster with SIGKILL while sessions append, and
# a backend in the middle of a large batch.  After each restart every
# acknowledged event is there exactly once, stream versions are contiguous
# from 1, event_store.streams agrees with the events, no partial batch is
# visible and appends continue at the right versions.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'\nrestart_after_crash = on\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');

my $rounds = 10;

# SIGKILL the postmaster and start it again.  Where PID 1 does not reap
# orphans (containers), the dead postmaster lingers as a zombie and its lock
# file looks live: wait until it is dead or a zombie, then retry the start
# until the orphaned backends have gone.
sub crash_and_restart
{
    my $pidfile = $node->data_dir . '/postmaster.pid';
    open my $fh, '<', $pidfile or die "no $pidfile";
    my $pid = <$fh>;
    close $fh;
    chomp $pid;
    $node->kill9;
    for (1 .. 100)
    {
        my $state = '';
        if (open my $st, '<', "/proc/$pid/stat")
        {
            $state = (split / /, <$st>)[2];
            close $st;
        }
        last if $state eq '' || $state eq 'Z';
        usleep(50_000);
    }
    for my $try (1 .. 40)
    {
        unlink $pidfile if -e "/proc/$pid" && -e $pidfile;
        return if $node->start(fail_ok => 1);
        usleep(250_000);
    }
    die 'could not restart after the crash';
}
my %acked;    # "stream|version" => 1

# Start a psql that appends forever (hot and cold streams, single events and
# batches) and prints one line per acknowledged (committed) append.  It stops
# at the first error (the crash) and flushes what it printed.
my $tmp = PostgreSQL::Test::Utils::tempdir;

sub start_writer
{
    my ($id, $round) = @_;
    my $file = "$tmp/writer_$id.sql";
    open my $fh, '>', $file or die;
    for my $i (1 .. 100000)
    {
        my $stream = $i % 3 == 0 ? "hot-1" : "cold-$id-" . ($i % 17);
        if ($i % 5 == 0)
        {
            print $fh "SELECT 'ack', '$stream', event_store.append('$stream', ARRAY[event_store.event('B', '{\"i\": $i}'), event_store.event('B', '{\"i\": $i}'), event_store.event('B', '{\"i\": $i}')]), 3;\n";
        }
        else
        {
            print $fh "SELECT 'ack', '$stream', event_store.append_event('$stream', 'E', '{\"i\": $i}'), 1;\n";
        }
    }
    close $fh;
    my $out = "$tmp/writer_${id}_$round.out";
    my $h = IPC::Run::start(
        [ 'psql', '-X', '-At', '-F', '|', '-v', 'ON_ERROR_STOP=1', '-f', $file, '-d', $node->connstr('postgres') ],
        '<', '/dev/null', '>', $out, '2>', "$out.err");
    return [ $h, $out ];
}

sub check_invariants
{
    my ($label) = @_;
    my $missing = 0;
    my $list = $node->safe_psql('postgres',
        q{SELECT string_agg(stream_id || '|' || stream_version, ',') FROM event_store.events});
    my %have = map { $_ => 1 } split /,/, $list;
    for my $k (keys %acked) { $missing++ unless $have{$k}; }
    is($missing, 0, "$label: every acknowledged event is present (" . scalar(keys %acked) . " acknowledged)");

    is($node->safe_psql('postgres', q{
        SELECT count(*) FROM (SELECT stream_id FROM event_store.events GROUP BY stream_id
                               HAVING count(*) <> max(stream_version) OR count(DISTINCT stream_version) <> count(*)
                                   OR min(stream_version) <> 1) s}),
       '0', "$label: versions contiguous from 1, no duplicates");
    is($node->safe_psql('postgres', q{
        SELECT count(*) FROM event_store.streams s
         FULL JOIN (SELECT stream_id, count(*) AS n, max(stream_version) AS v, min(global_position) AS f,
                           max(global_position) AS l FROM event_store.events GROUP BY stream_id) e USING (stream_id)
         WHERE s.version IS DISTINCT FROM e.v OR s.version IS DISTINCT FROM e.n
            OR s.first_position IS DISTINCT FROM e.f OR s.last_position IS DISTINCT FROM e.l}),
       '0', "$label: event_store.streams agrees with the events");
    is($node->safe_psql('postgres', q{SELECT count(DISTINCT global_position) = count(*) FROM event_store.events}),
       't', "$label: global positions unique");
}

for my $round (1 .. $rounds)
{
    my @writers = map { start_writer($_, $round) } 1 .. 3;
    # let them run a random while, then crash
    usleep(300_000 + int(rand(1_200_000)));
    crash_and_restart();
    for my $w (@writers)
    {
        my ($h, $out) = @$w;
        # psql stops at the lost connection and flushes its output
        eval { $h->finish; 1 } or $h->kill_kill;
        open my $fh, '<', $out or die "no $out";
        for my $line (<$fh>)
        {
            chomp $line;
            next unless $line =~ /^ack\|([^|]+)\|(\d+)\|(\d+)$/;
            my ($stream, $version, $n) = ($1, $2, $3);
            $acked{"$stream|$_"} = 1 for ($version - $n + 1 .. $version);
        }
    }
    check_invariants("crash $round");
    my $before = $node->safe_psql('postgres', q{SELECT max(stream_version) FROM event_store.events WHERE stream_id = 'hot-1'});
    is($node->safe_psql('postgres',
        "SELECT event_store.append_event('hot-1', 'AfterCrash', '{}', expected_version => $before)"),
       $before + 1, "crash $round: appends continue at the right version");
}

# A backend killed in the middle of a large batch: an AFTER trigger holds the
# batch, inserted but uncommitted, while we kill the postmaster.
$node->safe_psql('postgres', q{
    CREATE FUNCTION hold_batch() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM new_rows WHERE stream_id = 'big-1') THEN
            PERFORM pg_sleep(60);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER hold_batch AFTER INSERT ON event_store.events
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hold_batch();
});
my ($out, $err) = ('', '');
my $h = IPC::Run::start(
    [ 'psql', '-X', '-At', '-d', $node->connstr('postgres'), '-c',
      q{SELECT event_store.append('big-1', (SELECT array_agg(event_store.event('Big', jsonb_build_object('i', i))) FROM generate_series(1, 5000) i))} ],
    '>', \$out, '2>', \$err);
$node->poll_query_until('postgres',
    q{SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%big-1%' AND wait_event = 'PgSleep'})
  or die 'batch did not reach the trigger';
crash_and_restart();
$h->kill_kill;
is($node->safe_psql('postgres', q{SELECT count(*) FROM event_store.events WHERE stream_id = 'big-1'}),
   '0', 'killed batch: no partial batch visible');
is($node->safe_psql('postgres', q{SELECT event_store.stream_version('big-1')}),
   '0', 'killed batch: stream does not exist');
$node->safe_psql('postgres', 'DROP TRIGGER hold_batch ON event_store.events');
is($node->safe_psql('postgres',
    q{SELECT event_store.append('big-1', (SELECT array_agg(event_store.event('Big', '{}')) FROM generate_series(1, 5000)), 0)}),
   '5000', 'killed batch: the batch can be appended afterwards');
check_invariants('after batch crash');

$node->stop;
done_testing();
